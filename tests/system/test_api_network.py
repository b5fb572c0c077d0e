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


def test_your_own_torch_module_and_data_dir_run_on_a_real_network(tmp_path, monkeypatch):
    """Bring your own model and data: a torch module named package.module:factory in
    the working directory, and a data directory, on two real node processes."""
    import numpy as np

    from learningchain.learning import data
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n"
        "def make(n_features, n_outputs):\n"
        "    return nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, n_outputs))\n")
    ds = data.load_dataset("digits")
    own = tmp_path / "own"
    own.mkdir()
    for i, (X, y) in enumerate(data.partition(ds.X_train, ds.y_train, 2, "iid")):
        np.savez(own / f"node{i}.npz", X=X, y=y)
    np.savez(own / "test.npz", X=ds.X_test, y=ds.y_test)
    monkeypatch.chdir(tmp_path)  # where the user's module lives: the nodes import it from here too
    with lc.Network.local(data=own, model="mynet:make", rounds=1, out=tmp_path / "net") as net:
        assert len(net.urls) == 2  # one node per file
        done = net.wait_round(1, timeout=90, i=0)
        assert done["status"] == "closed" and len(done["accepted"]) == 2
        assert done["metrics"]["accuracy"] > 0.5  # measured on own/test.npz, from G0 at chance
        model = net.model(1)
        assert sorted(model["weights"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
        assert model["weights"]["0.weight"].shape == (16, 64)
        assert net.wait_round(1, timeout=30, i=1)["model_digest"] == done["model_digest"]
    with pytest.raises(ConfigError, match="cannot import nosuchmodule"):
        lc.Network.local(model="nosuchmodule:make", out=tmp_path / "z")
    assert not (tmp_path / "z").exists()
