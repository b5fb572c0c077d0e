"""``lc.Network.local`` (learningchain/api.py): a real 2-node network of
``node.py run`` processes started from Python, followed over HTTP
(``/rounds/<r>?wait=``, ``/status``, ``/model``) and always stopped, also when
the code inside the ``with`` block fails."""
from __future__ import annotations

import pytest

import learningchain as lc
from learningchain.core.errors import ConfigError


def test_a_local_network_learns_agrees_and_is_always_stopped():
    with pytest.raises(RuntimeError, match="the notebook cell failed"):
        with lc.Network.local(n=2, rounds=1) as net:
            procs = [node.popen for node in net.nodes]
            assert len(net.urls) == 2 and all(url.startswith("http://127.0.0.1:") for url in net.urls)
            assert [s["pubkey"] for s in (net.status(0), net.status(1))] == [n.pubkey for n in net.nodes]
            done = net.wait_round(1, timeout=60, i=0)
            assert done["status"] == "closed" and 0 <= done["metrics"]["accuracy"] <= 1
            assert sorted(done["accepted"]) == sorted(u["id"] for u in done["updates"]) and len(done["accepted"]) == 2
            assert net.wait_round(1, timeout=30)["model_digest"] == done["model_digest"]  # every node closed it
            models = [net.model(0), net.model(1)]
            assert models[0]["round"] == models[1]["round"] == 1
            assert models[0]["digest"] == models[1]["digest"] == done["model_digest"]
            assert {k: v.shape for k, v in models[0]["weights"].items()} == {
                k: v.shape for k, v in models[1]["weights"].items()} and models[0]["weights"]
            with pytest.raises(ConfigError, match="rests after round 1"):
                net.wait_round(2)
            out = net.out
            raise RuntimeError("the notebook cell failed")
    assert net.stopped and all(p.poll() is not None for p in procs)  # every process ended
    assert not out.exists()  # the temporary directory went with them
    net.stop()  # idempotent
    with pytest.raises(lc.LearningChainError, match="stopped"):
        net.status(0)


def test_bad_arguments_start_no_process(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset"):
        lc.Network.local(n=2, dataset="no-such", out=tmp_path / "x")
    with pytest.raises(ConfigError, match="krum.*needs at least"):
        lc.Network.local(n=3, aggregator="krum", byzantine=1, attack="sign-flip", out=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
