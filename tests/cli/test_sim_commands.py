"""``simulate``, ``experiment`` and ``data`` with ``--data DIR`` (a user's node
files and test.npz; learningchain/cli/sim_commands.py), and their one-line errors."""
from __future__ import annotations

import json

import pytest

from learningchain.cli import main as cli
from tests.helpers import bad_data_dir, write_data_dir


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_takes_its_partitions_and_test_set_from_a_directory(tmp_path, capsys):
    d = write_data_dir(tmp_path / "d", sizes=(40, 30, 20))  # (2, 3) images: flattened to 6 features
    code, out, err = run(["simulate", "--data", str(d), "--rounds", "2", "--no-baselines",
                          "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"sim: 3 nodes (0 x no attack), 2 rounds, {d}, mlp, fedavg")
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    cfg = res["config"]
    assert cfg["data_dir"] == str(d) and cfg["nodes"] == 3 and cfg["spec"]["n_features"] == 6
    assert cfg["data"] == {"samples": 150, "sized_by": "data_dir", "train": 90, "test": 60,
                           "per_node_min": 20, "per_node_max": 40}
    assert res["final"]["accuracy"] > 0.9  # separable classes, measured on test.npz


def test_experiment_takes_a_directory_and_counts_its_nodes(tmp_path, capsys):
    d = write_data_dir(tmp_path / "d", sizes=(30, 30))
    code, out, err = run(["experiment", "dp", "--data", str(d), "--rounds", "1", "--sigmas", "0",
                          "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    sweep = json.loads((tmp_path / "out" / "dp.json").read_text())
    assert sweep["provenance"]["config"]["base"]["data_dir"] == str(d)
    assert sweep["provenance"]["config"]["base"]["nodes"] == 2


def test_data_checks_a_directory_and_writes_nothing(tmp_path, capsys):
    d = write_data_dir(tmp_path / "d", sizes=(30, 20))
    code, out, err = run(["data", "--data", str(d)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{d}: 2 nodes, classification, 6 features, 3 classes, 50 training samples, 60 test samples"
    assert [line.split()[0] for line in lines[1:]] == ["node0.npz", "node1.npz", "test.npz"]
    (d / "test.npz").unlink()
    code, out, err = run(["data", "--data", str(d)], capsys)
    assert code == 0 and err == f"no test.npz in {d}: the global model is not evaluated\n"
    assert sorted(p.name for p in d.iterdir()) == ["node0.npz", "node1.npz"]


@pytest.mark.parametrize("command", [["simulate", "--rounds", "1"], ["experiment", "dp", "--rounds", "1"], ["data"]])
@pytest.mark.parametrize("make, says", [
    (lambda d: None, "no such directory"),
    (lambda d: d.mkdir(), "no node0.npz"),
    (lambda d: bad_data_dir(d, "mismatched"), "node1.npz has 5 features per sample, node0.npz has 6"),
    (lambda d: bad_data_dir(d, "without-y"), "must hold arrays X and y; missing y"),
])
def test_bad_directories_are_one_line_with_exit_2(tmp_path, capsys, command, make, says):
    d = tmp_path / "d"
    make(d)
    out_flag = [] if command[0] == "data" else ["--out", str(tmp_path / "out")]  # data --data writes nothing
    code, out, err = run([*command, "--data", str(d), *out_flag], capsys)
    assert code == 2 and err.count("\n") == 1 and says in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv, says", [
    (["simulate", "--nodes", "3"], "nodes 3 does not match the 2 node files"),
    (["experiment", "dp", "--nodes", "3"], "nodes 3 does not match the 2 node files"),
    (["data", "--nodes", "3"], "--nodes 3 does not match the 2 node files"),
    (["simulate", "--dataset", "digits"], "drop --dataset"),
    (["experiment", "dp", "--split", "dirichlet"], "drop --split"),
])
def test_flags_that_do_not_go_with_a_directory_are_one_line(tmp_path, capsys, argv, says):
    d = write_data_dir(tmp_path / "d", sizes=(20, 20))
    code, out, err = run([*argv, "--data", str(d)], capsys)
    assert code == 2 and err.count("\n") == 1 and says in err, err


def test_simulate_without_a_test_file_says_why_it_cannot_run(tmp_path, capsys):
    d = write_data_dir(tmp_path / "d", sizes=(20, 20), test=None)
    code, out, err = run(["simulate", "--data", str(d), "--rounds", "1"], capsys)
    assert code == 2 and f"no test.npz in {d}: the global model is not evaluated" in err
    assert "add test.npz" in err and err.count("\n") == 1
