"""A genesis naming a user's module (``package.module:factory``) is data: ``node.py
run`` imports and runs that code only with ``--trust-model`` naming it."""
from __future__ import annotations

import json
import sys

import numpy as np

from learningchain.cli.main import main


def test_run_imports_no_module_a_genesis_names_without_trust_model(tmp_path, monkeypatch, capsys):
    (tmp_path / "evilnet.py").write_text("import pathlib\npathlib.Path('imported').write_text('ran')\n")
    monkeypatch.chdir(tmp_path)
    # a torch mlp's genesis, renamed to the user's module (so this process never imported it)
    assert main(["genesis", "--nodes", "2", "--open", "--model", "mlp", "--backend", "torch", "--out", "g.json"]) == 0
    doc = json.loads((tmp_path / "g.json").read_text())
    doc["model"]["kind"] = "evilnet:make"
    (tmp_path / "g.json").write_text(json.dumps(doc))
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 64), np.float32), y=np.arange(4) % 2)  # a node that learns
    capsys.readouterr()
    for trust in ([], ["--trust-model", "othernet:make"]):
        code = main(["run", "--data-dir", str(tmp_path / "n0"), "--port", "1", "--genesis", "g.json",
                     "--data", "d.npz", *trust])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--trust-model evilnet:make" in err
    assert "evilnet" not in sys.modules and not (tmp_path / "imported").exists()  # its code never ran
    assert not (tmp_path / "n0").exists()  # and nothing was written
