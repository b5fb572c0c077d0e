"""The simulator with a PyTorch model: a small cnn federation on ct-phantoms
through ``learningchain.simulate`` (the ledger core the network runs) learns,
and its results.json says which backend and model it ran."""
from __future__ import annotations

import json

import learningchain as lc


def test_a_cnn_federation_on_ct_phantoms_learns_and_records_its_backend(tmp_path):
    res = lc.simulate(nodes=2, rounds=2, dataset="ct-phantoms", model="cnn", samples=240, seed=0,
                      baselines=False, out=str(tmp_path))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc == res  # what simulate returns is what results.json holds
    spec = doc["config"]["spec"]
    assert doc["config"]["model"] == "cnn"
    assert (spec["backend"], spec["kind"], spec["input_shape"]) == ("torch", "cnn", [1, 32, 32])
    assert doc["provenance"]["config"]["spec"]["backend"] == "torch"
    names = [name for name, _ in spec["layout"]]
    assert "conv0.weight" in names and "fc1.bias" in names
    assert [e["round"] for e in doc["rounds"]] == [1, 2]
    assert all(len(e["accepted"]) == 2 and not e["rejected"] for e in doc["rounds"])
    assert doc["final"]["accuracy"] > doc["initial"]["accuracy"]  # trained past G0
