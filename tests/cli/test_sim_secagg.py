"""``node.py simulate --secure-aggregation``: a run end to end, and the
combinations it cannot run refused with one line."""
from __future__ import annotations

import json

import pytest

from learningchain.cli import main as cli


def test_simulate_secure_aggregation_writes_the_phases_of_each_round(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["simulate", "--nodes", "4", "--rounds", "2", "--model", "softmax", "--secure-aggregation",
                     "--sa-threshold", "3", "--sa-drop-after-setup", "1", "--no-baselines", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "secure aggregation t=3 clip=0.5" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["secure_aggregation_params"]["threshold"] == 3
    for entry in res["rounds"]:
        sa = entry["secure_aggregation"]
        assert (sa["setups"], sa["counted"], sa["dropped"], sa["failed"]) == (4, 3, 1, None)
        assert len(entry["accepted"]) == 3 and set(sa["phase_blocks"]) == {"setup", "input", "unmask"}


@pytest.mark.parametrize("argv, says", [
    (["--sa-drop-after-setup", "1"], "need secure_aggregation"),
    (["--secure-aggregation", "--aggregator", "krum"], "robust rule must see each update"),
    (["--secure-aggregation", "--sa-drop-after-setup", "2", "--sa-drop-after-input", "2"], "fewer than the threshold"),
    (["--secure-aggregation", "--sa-clip", "-1"], "sa_clip must be a positive decimal"),
    (["--secure-aggregation", "--sa-scale", "1000000000"], "exceeds 2^30"),
    (["--secure-aggregation", "--selection", "random-k", "--select-k", "8"], "selection all"),
])
def test_bad_combinations_are_refused_with_one_line(tmp_path, capsys, argv, says):
    out = tmp_path / "d"
    code = cli.main(["simulate", "--nodes", "10", "--rounds", "1", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
