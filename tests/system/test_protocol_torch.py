"""docs/protocol.md for torch models (issue 15): the independent verifier,
written from the document alone, follows a chain of a PyTorch network (shapes
and G(0) from the genesis layout), and the torch worked example of section 10
is what the code computes."""
import copy
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from learningchain.core.encoding import canonical_json, weights_digest
from learningchain.learning.models import default_spec, initial_weights
from learningchain.sim.simulator import Simulation, SimConfig
from tests.independent_verifier import Invalid, g0, model_shapes, verify_chain
from tests.independent_verifier import weights_digest as doc_digest

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
EXAMPLE = DOC.split("### A torch model: genesis spec and G(0)")[1].split("\n## ")[0]


#: tiny torch networks on digits (8x8 images): a cnn (4-d kernels in every update) and an mlp
NETWORKS = {"cnn": dict(model="cnn", model_params={"hidden": [2, 4, 8], "epochs": 1}),
            "mlp": dict(model="mlp", backend="torch", model_params={"hidden": [8], "epochs": 1})}
LAYOUTS = {"cnn": {"conv0.bias": [2], "conv0.weight": [2, 1, 3, 3], "conv1.bias": [4], "conv1.weight": [4, 2, 3, 3],
                   "fc0.bias": [8], "fc0.weight": [8, 16], "fc1.bias": [10], "fc1.weight": [10, 8]},
           "mlp": {"fc0.bias": [8], "fc0.weight": [8, 64], "fc1.bias": [10], "fc1.weight": [10, 8]}}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def torch_chain(request):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: more threads only contend for the 2 shared cores
    try:
        yield (request.param, *_simulate(NETWORKS[request.param]))
    finally:
        torch.set_num_threads(threads)


def _simulate(network):
    cfg = SimConfig(nodes=3, rounds=2, dataset="digits", difficulty=64, **network)
    sim = Simulation(cfg)
    sim.run(with_baselines=False)
    chain = sim.ledgers[0].chain
    blocks = [json.loads(b.serialize()) for b in chain.main_chain(0, chain.height + 1)]
    return sim, chain, blocks


def test_verifier_accepts_a_chain_of_a_torch_network(torch_chain):
    kind, sim, chain, blocks = torch_chain
    model = blocks[0]["config"]["model"]
    assert model["backend"] == "torch" and model["kind"] == kind and dict(model["layout"]) == LAYOUTS[kind]
    assert model_shapes(model) == {n: tuple(s) for n, s in LAYOUTS[kind].items()}  # PyTorch's (out, in, ...)
    tx = next(tx for b in blocks for tx in b["txs"])
    assert {n: a["shape"] for n, a in tx["weights"].items()} == LAYOUTS[kind]
    report = verify_chain(blocks, now_ms=sim.now_ms)
    assert report["tip"] == chain.tip.hash and report["rounds_closed"] == 2
    assert report["model_digest"] == chain.tip_state.model_digest
    # every round's aggregate was recomputed: each closing commitment names the verifier's digest chain
    closing = [b["commitment"]["model_digest"] for b in blocks if b["commitment"]]
    assert len(closing) == 2 and closing[-1] == report["model_digest"]
    genesis_state = chain.state_of(chain.block_at(0).hash)
    assert doc_digest(g0(model)) == genesis_state.model_digest
    assert all(tx["base"] == genesis_state.model_digest for b in blocks for tx in b["txs"] if tx["round"] == 1)


def test_verifier_refuses_a_forged_torch_aggregate(torch_chain):
    _, sim, chain, blocks = torch_chain
    forged = copy.deepcopy(blocks)
    next(b for b in forged if b["commitment"])["commitment"]["model_digest"] = "00" * 32
    with pytest.raises(Invalid):
        verify_chain(forged, now_ms=sim.now_ms)


def test_verifier_and_code_refuse_an_update_off_the_layout(torch_chain):
    """Section 3: a torch update's arrays are the layout's, shape for shape. A
    re-signed update whose fc0.weight is transposed (the numpy orientation, the
    same number of values) in a re-mined block: both refuse it."""
    from learningchain.ledger.chain import Chain
    from learningchain.ledger.tx import UpdateTx
    from tests.helpers import rebuild, refused
    _, sim, chain, blocks = torch_chain
    at = next(i for i, b in enumerate(blocks) if b["txs"])
    orig = chain.block_at(at)
    tx = orig.txs[0]
    key = next(p.key for p in sim.participants if p.key.public_hex == tx.sender)
    weights = dict(tx.decoded_weights)
    weights["fc0.weight"] = np.ascontiguousarray(weights["fc0.weight"].T)
    bad = UpdateTx.create(key, tx.round, tx.base, weights, tx.num_samples, timestamp=tx.timestamp)
    forged = rebuild(orig, txs=(bad, *orig.txs[1:]))
    with pytest.raises(Invalid, match="shapes"):
        verify_chain(blocks[:at] + [json.loads(forged.serialize())], now_ms=sim.now_ms)
    fresh = Chain(chain.block_at(0))
    for h in range(1, at):
        fresh.add_block(chain.block_at(h), sim.now_ms)
    assert "tx-shape-mismatch" in refused(fresh, forged, "block-bad-tx", now_ms=sim.now_ms).detail


# --- section 10's torch worked example ------------------------------------------------

def test_torch_worked_example_spec_and_digest_are_pinned():
    spec = default_spec("ct-phantoms", "cnn")
    text = canonical_json(spec.to_dict()).decode()
    pinned = EXAMPLE.split("```")[1].strip()
    assert pinned == text
    doc_model = json.loads(pinned)
    g = initial_weights(spec)
    digest = re.search(r"G\(0\) digest \(`weights_digest`.*?`([0-9a-f]{64})`", EXAMPLE, re.S).group(1)
    assert digest == weights_digest(g) == doc_digest(g0(doc_model))
    rows = re.findall(r"^\| `([a-z0-9.]+)` \| `(\[[0-9, ]+\])` \| `([0-9a-f]{64})` \|$", EXAMPLE, re.M)
    assert [r[0] for r in rows] == list(g)
    ours = g0(doc_model)
    for name, shape, digest in rows:
        assert list(g[name].shape) == json.loads(shape) and g[name].dtype.str == "<f4"
        assert hashlib.sha256(g[name].tobytes()).hexdigest() == digest == hashlib.sha256(ours[name].tobytes()).hexdigest()


def test_torch_worked_example_stream_values_are_pinned():
    g = initial_weights(default_spec("ct-phantoms", "cnn"))
    lines = EXAMPLE.split("```")[3].strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        name, rest = line.split(None, 1)
        values, raw = rest.split("bytes")
        first = g[name].ravel()[:4]
        assert [str(v) for v in first] == values.split()
        assert first.tobytes().hex() == "".join(raw.split())
        assert np.array([float(v) for v in values.split()], dtype="<f4").tobytes() == first.tobytes()
    prefix = b"learningchain-g0" + bytes(8) + b"conv0.weight" + b"\x00"
    h = hashlib.sha256(prefix + bytes(8)).hexdigest()
    u0 = (int(h[:16], 16) >> 11) * 2.0 ** -53
    flat = " ".join(EXAMPLE.split())  # the prose wraps anywhere
    assert f"= `{h}`" in flat and f"`u_0 = (0x{h[:16]} >> 11) · 2^-53 = {u0!r}`" in flat
    assert f"sqrt(6 / 81) = {(6 / 81) ** 0.5!r}" in flat


def test_verifier_g0_follows_every_case_of_the_layout_rule():
    """Section 7's layout rule from the document alone, bit for bit with the code:
    matrices, a 5-d kernel, norm scales and running variances (ones), biases and
    running means (zeros); a user's architecture, never built here."""
    from learningchain.learning.models import ModelSpec
    spec = ModelSpec("my_nets.layers:make", "classification", 12, 3, seed=11, backend="torch", input_shape=(3, 4),
                     layout=(("emb.weight", (5, 3)), ("conv.weight", (2, 3, 2, 1, 2)), ("bn.weight", (4,)),
                             ("bn.bias", (4,)), ("bn.running_var", (4,)), ("bn.running_mean", (4,)),
                             ("temperature", (1,)), ("gain.weight", (1,))))
    ours, theirs = initial_weights(spec), g0(spec.to_dict())
    assert list(theirs) == list(ours)
    for name in ours:
        assert theirs[name].dtype.str == ours[name].dtype.str == "<f4"
        assert theirs[name].shape == ours[name].shape and theirs[name].tobytes() == ours[name].tobytes(), name
    assert theirs["bn.running_var"].tolist() == [1.0] * 4 and theirs["gain.weight"].tolist() == [1.0]
    assert not theirs["bn.running_mean"].any() and theirs["temperature"].tolist() == [0.0]
    assert weights_digest(ours) == doc_digest(theirs)
