"""``simulate``, ``experiment`` and ``data`` (learningchain/cli/sim_commands.py):
with ``--data DIR`` (a user's node files and test.npz) and their one-line errors;
with ``--seeds`` (one run per seed, the mean ± sample std summary, the plots)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.cli import main as cli
from tests.helpers import bad_data_dir, write_data_dir

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--nodes", "2", "--rounds", "2", "--model", "softmax"]


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG


def test_simulate_seeds_writes_each_run_and_their_summary(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["simulate", *TINY, "--seeds", "0..1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    finals = []
    for s in (0, 1):
        one = json.loads((out / f"seed-{s}" / "results.json").read_text())
        assert one["config"]["seed"] == s and _png(out / f"seed-{s}" / "metric.png")
        finals.append(one["final"]["accuracy"])
    agg = json.loads((out / "results.json").read_text())
    assert agg["repeats"]["seeds"] == [0, 1] and agg["runs"] == {"0": "seed-0/results.json", "1": "seed-1/results.json"}
    final = agg["final"]["accuracy"]
    assert final["values"] == finals and final["n"] == 2
    assert final["mean"] == pytest.approx(sum(finals) / 2)
    assert final["std"] == pytest.approx(abs(finals[0] - finals[1]) / 2 ** 0.5)  # sample std of two values
    assert [e["round"] for e in agg["rounds"]] == [1, 2] and agg["rounds"][1]["metrics"]["accuracy"]["n"] == 2
    assert agg["baselines"]["centralized"]["accuracy"]["n"] == 2
    assert agg["provenance"]["seeds"] == {"seeds": [0, 1]}
    assert _png(out / "metric.png")
    assert f"final accuracy {final['mean']:.4f} ± {final['std']:.4f} (n=2)" in printed
    assert "seed 0: initial accuracy" in printed and "seed 1: initial accuracy" in printed


def test_experiment_seeds_writes_mean_and_std_per_point(tmp_path, capsys):
    out = tmp_path / "x"
    assert cli.main(["experiment", "dp", *TINY, "--sigmas", "0,1", "--seeds", "0,1", "--out", str(out)]) == 0
    one = [json.loads((out / f"seed-{s}" / "dp.json").read_text()) for s in (0, 1)]
    agg = json.loads((out / "dp.json").read_text())
    got = [d["points"][0]["final"] for d in one]
    assert agg["repeats"]["seeds"] == [0, 1] and agg["points"][0]["sigma"] == 1.0
    assert agg["points"][0]["final"] == pytest.approx(sum(got) / 2)
    assert agg["std"]["points"][0]["final"] == pytest.approx(abs(got[0] - got[1]) / 2 ** 0.5)
    assert agg["per_seed"]["1"]["points"] == one[1]["points"]
    assert _png(out / "dp.png") and _png(out / "seed-0" / "dp.png")
    assert "mean ± sample std (n - 1) over 2 seeds 0,1:" in capsys.readouterr().out


def test_byzantine_sweep_with_seeds_plots_error_bars(tmp_path):
    out = tmp_path / "b"
    assert cli.main(["experiment", "byzantine", "--nodes", "4", "--rounds", "1", "--model", "softmax",
                     "--aggregators", "median", "--max-byzantine", "1", "--seeds", "0,1", "--out", str(out)]) == 0
    agg = json.loads((out / "byzantine.json").read_text())
    assert agg["aggregators"]["median"]["byzantine"] == [0, 1]
    assert len(agg["std"]["aggregators"]["median"]["final"]) == 2
    assert _png(out / "byzantine.png") and _png(out / "byzantine_rounds.png")


REFUSED = "--seed and --seeds are exclusive: one seed with --seed, several with --seeds"


def test_seed_with_seeds_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "node.py"), "simulate", *TINY, "--seed", "1", "--seeds", "0,1",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"node.py simulate: {REFUSED}"]
    assert not (tmp_path / "o").exists()


def test_experiment_refuses_seed_with_seeds(tmp_path, capsys):
    # --seed 0 is refused too, though 0 is --seed's default
    assert cli.main(["experiment", "dp", *TINY, "--seed", "0", "--seeds", "0,1", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"node.py experiment: {REFUSED}"]
    assert not (tmp_path / "o").exists()


def test_bad_seeds_value_is_one_usage_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--seeds", "2..1"])
    assert exc.value.code == 2
    assert "argument --seeds: '2..1'" in capsys.readouterr().err


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
