"""ct-phantoms: seeded CT slices, reconstructed by filtered back-projection."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from learningchain.core.errors import ConfigError
from learningchain.learning import phantoms
from learningchain.learning.data import load_dataset, partition
from learningchain.learning.models import default_spec


def digest(X: np.ndarray) -> str:
    return hashlib.sha256(X.tobytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_differs():
    X, y = phantoms.generate(12, seed=3)
    again, y2 = phantoms.generate(12, seed=3)
    assert digest(X) == digest(again) and np.array_equal(y, y2)
    assert digest(phantoms.generate(12, seed=4)[0]) != digest(X)
    # image i has its own generator: a shorter run is a prefix of a longer one
    assert digest(phantoms.generate(5, seed=3)[0]) == digest(X[:5])


def test_shapes_dtype_range_and_balanced_classes():
    X, y = phantoms.generate(30, seed=0, size=28)
    assert X.shape == (30, 28, 28) and X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0 and X.max() > 0.5
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [10, 10, 10]  # none, bright, dark
    assert len(phantoms.CLASSES) == 3


def test_reconstruction_has_artifacts_but_follows_the_phantom():
    clean, _ = phantoms.generate(9, seed=1, clean=True)
    rec, _ = phantoms.generate(9, seed=1)
    for c, r in zip(clean, rec):
        assert np.abs(c - r).mean() > 0.02  # streaks, noise, blur: not the phantom itself
        assert np.corrcoef(c.ravel(), r.ravel())[0, 1] > 0.85


def test_lesions_change_the_brain():
    """Same head (the same generator draws up to the lesion), with a bright and a
    dark lesion: brighter and darker pixels inside it, nothing outside it."""
    none = phantoms.phantom(np.random.default_rng(7), lesion=0)
    bright = phantoms.phantom(np.random.default_rng(7), lesion=1)
    dark = phantoms.phantom(np.random.default_rng(7), lesion=2)
    assert (bright >= none).all() and (bright > none).sum() >= 4
    assert (dark <= none).all() and (dark < none).sum() >= 4


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2, "size": 4}, {"n": 2, "angles": 1},
                                    {"n": 2, "noise": -1.0}, {"n": 2.5}])
def test_bad_parameters_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="ct-phantoms"):
        phantoms.generate(**kwargs)


def test_dataset_splits_across_nodes():
    ds = load_dataset("ct-phantoms", seed=0, n_samples=240)
    assert ds.n_features == phantoms.SIZE ** 2 and ds.n_classes == 3 and ds.task == "classification"
    spec = default_spec("ct-phantoms")  # what demo / genesis / simulate build for it
    assert (spec.kind, spec.n_features, spec.n_outputs) == ("mlp", ds.n_features, ds.n_classes)
    for split in ("iid", "dirichlet", "quantity"):
        parts = partition(ds.X_train, ds.y_train, 4, split, alpha=0.5, seed=0)
        assert sum(len(y) for _, y in parts) == len(ds.y_train)


def test_a_tiny_simulation_learns_above_chance(tmp_path):
    from learningchain.cli import main as cli
    from learningchain.sim import results
    out = tmp_path / "ct"
    assert cli.main(["simulate", "--dataset", "ct-phantoms", "--nodes", "2", "--rounds", "2", "--model",
                     "softmax", "--no-baselines", "--samples", "400", "--out", str(out)]) == 0
    doc = results.read_results(out)
    assert doc["config"]["data"]["samples"] == 400
    assert doc["final"]["accuracy"] > 1 / 3 + 0.15  # three balanced classes: chance is 1/3
