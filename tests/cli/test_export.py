"""``node.py model --export FILE`` (learningchain/cli/export.py): the global model
of a real node served over HTTP in-process (tests/served.py), written as a
.npz that np.load(..., allow_pickle=False) reads back bit for bit."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learningchain.cli.export import export_model
from learningchain.cli.main import main
from learningchain.core.encoding import encode_weights, weights_digest
from learningchain.core.errors import LearningChainError
from tests.helpers import KEYS, update_tx
from tests.served import network_factory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def test_export_of_a_served_node_is_its_model_bit_for_bit(network, tmp_path, capsys):
    a = network("a")
    for k in KEYS[:3]:  # quorum 3: the block closes round 1, the model moves on from G0
        assert a.node.submit_tx(update_tx(a.node.chain, k)) == "accepted"
    a.mine_one()
    state = a.node.chain.tip_state
    out = tmp_path / "model.npz"
    assert main(["model", "--export", str(out), "--node", a.url]) == 0
    line = capsys.readouterr().out.strip()
    params = sum(int(v.size) for v in state.model.values())
    assert line == (f"wrote {out}: round {state.round - 1}, digest {state.model_digest}, "
                    f"{len(state.model)} arrays, {params} parameters")
    with np.load(out, allow_pickle=False) as z:
        assert set(z.files) == {*state.model, "__round__", "__digest__"}
        for name, arr in state.model.items():
            assert z[name].dtype == np.float32 and z[name].shape == arr.shape
            assert z[name].tobytes() == np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        assert int(z["__round__"]) == state.round - 1 >= 1
        assert str(z["__digest__"]) == state.model_digest
        assert weights_digest({n: z[n] for n in state.model}) == state.model_digest


def test_an_existing_file_needs_force_and_bad_paths_are_one_line(network, tmp_path, capsys):
    a = network("a")
    out = tmp_path / "model.npz"
    out.write_bytes(b"keep me")
    assert main(["model", "--export", str(out), "--node", a.url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists: pass --force" in err and out.read_bytes() == b"keep me"
    assert main(["model", "--export", str(out), "--force", "--node", a.url]) == 0
    assert np.load(out, allow_pickle=False)["__digest__"] == a.node.chain.tip_state.model_digest
    for bad, says in [(tmp_path / "no" / "such" / "m.npz", "does not exist"), (tmp_path, "is a directory"),
                      (tmp_path / "m.txt", "must end in .npz (numpy arrays) or .pt")]:
        assert main(["model", "--export", str(bad), "--node", a.url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and "Traceback" not in err
    assert main(["model", "--force", "--node", a.url]) == 2
    assert "--force applies to --export" in capsys.readouterr().err


def test_a_digest_that_does_not_match_writes_nothing(tmp_path):
    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    doc = {"round": 3, "digest": "00" * 32, "weights": encode_weights(weights)}
    with pytest.raises(LearningChainError, match="is not the node's"):
        export_model(doc, str(tmp_path / "m.npz"))
    assert not list(tmp_path.iterdir())  # no file, no temporary left behind
    doc["digest"] = weights_digest(weights)
    export_model(doc, str(tmp_path / "m.npz"))
    assert np.load(tmp_path / "m.npz", allow_pickle=False)["w"].tolist() == weights["w"].tolist()


def test_an_unreachable_node_is_exit_1_and_model_without_export_imports_no_numpy(tmp_path):
    code = ("import sys; from learningchain.cli.main import main\n"
            "code = main(['model', '--node', 'http://127.0.0.1:9'])\n"
            "print(code, 'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.stdout.split() == ["1", "False"], done.stdout + done.stderr
    assert main(["model", "--export", str(tmp_path / "m.npz"), "--node", "http://127.0.0.1:9"]) == 1


def test_a_pt_export_loads_into_the_torch_module_bit_for_bit(tmp_path):
    import torch

    from learningchain.learning.models import build_model, default_spec
    model = build_model(default_spec("ct-phantoms", "cnn"))
    weights = model.initial_weights()
    digest = weights_digest(weights)
    line = export_model({"round": 4, "digest": digest, "weights": encode_weights(weights)}, str(tmp_path / "m.pt"))
    assert line.startswith(f"wrote {tmp_path / 'm.pt'}: round 4, digest {digest}, {len(weights)} tensors")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)  # no pickle of code: tensors and plain values
    assert ckpt["round"] == 4 and ckpt["digest"] == digest
    model.module.load_state_dict(ckpt["state_dict"])  # strict: every array of the module, no other
    for name, arr in weights.items():
        assert model.module.state_dict()[name].numpy().tobytes() == arr.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
