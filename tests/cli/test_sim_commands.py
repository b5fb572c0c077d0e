"""``simulate --seeds`` and ``experiment --seeds`` (learningchain/cli/sim_commands.py):
one run per seed, the mean ± sample std summary, the plots."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.cli import main as cli

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
