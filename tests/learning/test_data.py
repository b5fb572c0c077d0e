"""Datasets, partitions and partition files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from learningchain.learning.data import (DATASETS, FIXED_SIZES, MIN_PER_NODE, SYNTHETIC_PER_NODE,
                                         SYNTHETIC_SAMPLES, check_size, default_samples, load_dataset, load_meta,
                                         load_partition, partition, regenerate, train_size, write_partitions)
from learningchain.core.errors import ConfigError


@pytest.mark.parametrize("name", DATASETS)
def test_load_dataset(name):
    ds = load_dataset(name, n_samples=300 if name == "ct-phantoms" else None)  # images: 3 ms each
    n = len(ds.y_train) + len(ds.y_test)
    assert abs(len(ds.y_test) / n - 0.25) < 0.01
    assert ds.X_train.dtype == np.float32
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-4)
    if ds.task == "classification":
        assert ds.n_classes >= 2 and ds.y_train.dtype == np.int64
        # stratified: class proportions match
        p_tr = np.bincount(ds.y_train) / len(ds.y_train)
        p_te = np.bincount(ds.y_test, minlength=ds.n_classes) / len(ds.y_test)
        assert np.abs(p_tr - p_te).max() < 0.02
    else:
        assert ds.n_classes == 0


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("mnist")


@pytest.mark.parametrize("split", ["iid", "dirichlet", "quantity"])
def test_partition_covers_everything_once(split):
    ds = load_dataset("digits")
    parts = partition(ds.X_train, ds.y_train, 10, split, alpha=0.3, seed=1)
    assert len(parts) == 10
    assert sum(len(y) for _, y in parts) == len(ds.y_train)
    assert min(len(y) for _, y in parts) >= MIN_PER_NODE
    rows = np.concatenate([X for X, _ in parts])
    assert len(np.unique(rows, axis=0)) == len(np.unique(ds.X_train, axis=0))
    again = partition(ds.X_train, ds.y_train, 10, split, alpha=0.3, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(parts, again))


def test_dirichlet_skews_labels_and_quantity_skews_sizes():
    ds = load_dataset("digits")
    iid = partition(ds.X_train, ds.y_train, 10, "iid")
    dir_ = partition(ds.X_train, ds.y_train, 10, "dirichlet", alpha=0.1)

    def label_spread(parts):
        props = np.array([np.bincount(y, minlength=10) / len(y) for _, y in parts])
        return float(props.std(axis=0).mean())

    assert label_spread(dir_) > 3 * label_spread(iid)
    sizes_iid = [len(y) for _, y in iid]
    sizes_q = [len(y) for _, y in partition(ds.X_train, ds.y_train, 10, "quantity", alpha=0.5)]
    assert max(sizes_iid) - min(sizes_iid) <= 1
    assert max(sizes_q) > 2 * min(sizes_q)


def test_dirichlet_for_regression_bins_targets():
    ds = load_dataset("diabetes")
    parts = partition(ds.X_train, ds.y_train, 4, "dirichlet", alpha=0.2)
    assert sum(len(y) for _, y in parts) == len(ds.y_train)


def test_partition_refusals():
    X, y = np.zeros((12, 2)), np.zeros(12, dtype=int)
    with pytest.raises(ConfigError, match="cannot give"):
        partition(X, y, 3, "iid")
    with pytest.raises(ConfigError, match="unknown split"):
        partition(X, y, 1, "weird")


def test_write_and_load_partitions(tmp_path):
    out = write_partitions(tmp_path / "d", "digits", 3, "dirichlet", 0.5, 0)
    meta = load_meta(out)
    assert meta["n_nodes"] == 3 and meta["n_features"] == 64 and meta["n_classes"] == 10
    X, y = load_partition(out / "node0.npz")
    assert X.dtype == np.float32 and X.shape[1] == 64 and len(y) == len(X)
    Xt, yt = load_partition(out / "test.npz")
    assert len(yt) == len(Xt) > 0
    assert json.loads((out / "meta.json").read_text())["split"] == "dirichlet"


def test_user_files_npy_and_images(tmp_path):
    arr = np.hstack([np.arange(12.0).reshape(4, 3), np.array([[0], [1], [1], [0]])])
    np.save(tmp_path / "mine.npy", arr)
    X, y = load_partition(tmp_path / "mine.npy")
    assert X.shape == (4, 3) and list(y) == [0, 1, 1, 0]
    np.savez(tmp_path / "img.npz", X=np.zeros((5, 8, 8)), y=np.arange(5))
    X, y = load_partition(tmp_path / "img.npz")
    assert X.shape == (5, 64)


@pytest.mark.parametrize("make,match", [
    (lambda p: np.savez(p / "f.npz", A=np.zeros((2, 2))), "must hold arrays X and y"),
    (lambda p: np.savez(p / "f.npz", X=np.zeros((2, 2)), y=np.zeros(3)), "one value per row"),
    (lambda p: np.savez(p / "f.npz", X=np.array([[np.nan]]), y=np.zeros(1)), "NaN"),
    (lambda p: np.savez(p / "f.npz", X=np.array([{"a": 1}], dtype=object), y=np.zeros(1)),
     "not a plain NumPy"),
    (lambda p: (p / "f.npz").write_bytes(b"garbage"), "f.npz"),
    (lambda p: np.save(p / "f.npy", np.zeros(3)), "shape \\(n, features \\+ 1\\)"),
    (lambda p: (p / "f.csv").write_text("1,2"), "unsupported file type"),
])
def test_bad_files_are_named(tmp_path, make, match):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(ConfigError, match=match):
        load_partition(path)
    with pytest.raises(ConfigError, match="no such data file"):
        load_partition(tmp_path / "missing.npz")


def test_regenerate_only(tmp_path):
    written = regenerate(tmp_path, only=["diabetes-4-iid"])
    assert [p.name for p in written] == ["diabetes-4-iid"]
    assert sorted(p.name for p in written[0].iterdir()) == [
        "meta.json", "node0.npz", "node1.npz", "node2.npz", "node3.npz", "test.npz"]


def test_user_npy_pairs_are_flattened_and_described(tmp_path):
    from learningchain.learning.data import describe_file, infer_task, label_sibling
    np.save(tmp_path / "node0_X.npy", np.ones((6, 2, 3, 2)))
    np.save(tmp_path / "node0_y.npy", np.array([0, 1, 2, 0, 1, 4]))
    assert label_sibling(tmp_path / "node0_X.npy") == tmp_path / "node0_y.npy"
    X, y = load_partition(tmp_path / "node0_X.npy")
    assert X.shape == (6, 12) and X.dtype == np.float32 and list(y) == [0, 1, 2, 0, 1, 4]
    info = describe_file(tmp_path / "node0_X.npy")
    assert (info.task, info.n_features, info.n_outputs, info.n_samples) == ("classification", 12, 5, 6)
    assert describe_file(tmp_path / "node0_X.npy", "regression").n_outputs == 1
    assert infer_task(np.array([0.5, 1.0])) == "regression"
    assert infer_task(np.array([-1, 1])) == "regression"
    assert infer_task(np.array([0.0, 1.0, 1.0])) == "classification"
    assert infer_task(np.arange(200)) == "regression"  # too many distinct integers for classes
    np.save(tmp_path / "X.npy", np.ones((5, 3)))
    np.save(tmp_path / "y.npy", np.ones(4))
    with pytest.raises(ConfigError, match="one value per row"):
        load_partition(tmp_path / "X.npy")


# --- sizes: synthetic sets grow with the node count ---------------------------

def test_synthetic_default_size_grows_with_the_nodes():
    assert default_samples("synthetic-classification", 4) == SYNTHETIC_SAMPLES  # small runs unchanged
    n = default_samples("synthetic-regression", 1000)
    assert train_size(n) >= 1000 * SYNTHETIC_PER_NODE > train_size(n - 2)
    assert default_samples("digits", 1000) is None
    assert check_size("synthetic-classification", 1000) == n


def test_load_dataset_generates_the_samples_asked_for_and_1000_nodes_partition():
    ds = load_dataset("synthetic-classification", seed=1, n_samples=default_samples("synthetic-classification", 1000))
    assert len(ds.y_train) == train_size(len(ds.y_train) + len(ds.y_test)) >= 40_000
    parts = partition(ds.X_train, ds.y_train, 1000, "iid", seed=1)
    assert len(parts) == 1000 and min(len(y) for _, y in parts) >= SYNTHETIC_PER_NODE
    small = load_dataset("synthetic-regression", n_samples=300)
    assert (len(small.y_train), len(small.y_test)) == (225, 75)
    assert np.array_equal(load_dataset("synthetic-classification").y_train,  # None: the 2000 of before
                          load_dataset("synthetic-classification", n_samples=SYNTHETIC_SAMPLES).y_train)


@pytest.mark.parametrize("name", sorted(FIXED_SIZES))
def test_fixed_sizes_are_those_of_the_bundled_sets(name):
    ds = load_dataset(name)
    assert len(ds.y_train) + len(ds.y_test) == FIXED_SIZES[name]
    assert len(ds.y_train) == train_size(FIXED_SIZES[name])


@pytest.mark.parametrize("args,words", [
    (("digits", 1000, None), ["digits is too small for 1000 nodes", "1347 training samples", "at most 269 nodes"]),
    (("digits", 10, 5000), ["fixed size (1797 samples)", "cannot be resized"]),
    (("synthetic-classification", 1000, 5000), ["samples 5000 is too few for 1000 nodes", "at least 6667"]),
    (("synthetic-regression", 10, 0), ["positive integer"]),
    (("mnist", 10, None), ["unknown dataset"])])
def test_size_refusals_are_one_line_and_say_what_works(args, words):
    with pytest.raises(ConfigError) as exc:
        check_size(*args)
    assert "\n" not in str(exc.value) and all(w in str(exc.value) for w in words)
    if args[0] == "synthetic-classification":  # the least it names is enough
        assert check_size(args[0], args[1], 6667) == 6667


def test_load_dataset_refuses_samples_of_a_fixed_set():
    with pytest.raises(ConfigError, match="fixed size"):
        load_dataset("breast-cancer", n_samples=100)


def test_write_partitions_records_the_samples(tmp_path):
    out = write_partitions(tmp_path / "s", "synthetic-classification", 60, "iid", n_samples=400)
    assert load_meta(out)["samples"] == 400
    assert sum(len(load_partition(out / f"node{i}.npz")[1]) for i in range(60)) == train_size(400)
    assert load_meta(write_partitions(tmp_path / "d", "diabetes", 2, "iid"))["samples"] == 442


def test_a_data_directory_is_read_as_node_files_and_a_test_file(tmp_path):
    """--data DIR (simulate, experiment, demo, data): node0.., test.npz; images
    flattened; one task and feature count over every file; the .npy pair form too."""
    from learningchain.learning.data import dir_files, load_data_dir, summary_lines
    from tests.helpers import write_data_dir
    d = write_data_dir(tmp_path / "d", sizes=(30, 20))
    with np.load(d / "node1.npz") as z:
        np.save(d / "node2_X.npy", z["X"])
        np.save(d / "node2_y.npy", z["y"].astype(np.float64))  # float labels 0., 1., 2. are classes
    user = load_data_dir(d)
    assert [f.name for f in user.files] == ["node0.npz", "node1.npz", "node2_X.npy"]
    assert user.test_file.name == "test.npz" and user.test[0].shape == (60, 6)
    assert (user.info.task, user.info.n_features, user.info.n_outputs, user.info.n_samples) == \
        ("classification", 6, 3, 70)
    assert all(y.dtype == np.int64 for _, y in (*user.partitions, user.test))
    assert user.dataset().X_train.shape == (70, 6)
    assert summary_lines(user)[0].split()[:5] == ["node0.npz", "30", "samples", "6", "features"]
    (d / "test.npz").unlink()
    assert dir_files(d)[1] is None and load_data_dir(d).test is None
    with pytest.raises(ConfigError, match="no test.npz in .*the global model is not evaluated"):
        load_data_dir(d).dataset()


@pytest.mark.parametrize("make, says", [
    (lambda d: None, "no such directory"),
    (lambda d: d.mkdir(), "no node0.npz"),
    (lambda d: (d.mkdir(), np.savez(d / "node0.npz", X=np.zeros((4, 2)), y=np.zeros(4)),
                np.savez(d / "node2.npz", X=np.zeros((4, 2)), y=np.zeros(4))), "node1 is missing but node2.npz"),
    (lambda d: (d.mkdir(), np.savez(d / "node0.npz", X=np.zeros((4, 2)), y=np.zeros(4)),
                np.savez(d / "node1.npz", X=np.zeros((4, 3)), y=np.zeros(4))), "node1.npz has 3 features"),
    (lambda d: (d.mkdir(), np.savez(d / "node0.npz", X=np.zeros((4, 2)))), "missing y"),
])
def test_bad_data_directories_are_one_line(tmp_path, make, says):
    from learningchain.learning.data import load_data_dir
    d = tmp_path / "d"
    make(d)
    with pytest.raises(ConfigError, match=says):
        load_data_dir(d)
