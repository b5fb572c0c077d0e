"""A live node's own energy estimate: priced with the profile it declared in
genesis, per round, served in /status and /rounds/<r>."""
import pytest

from learningchain.node.web.api import create_app
from learningchain.node.keyfile import load_or_create_key
from learningchain.node.service import Node
from tests.helpers import tiny_config

PROFILE = {"train_nj": 1000, "send_nj": 10, "recv_nj": 5, "hash_nj": 100}


def test_status_and_round_report_the_nodes_own_energy(tmp_path):
    me = load_or_create_key(tmp_path / "node").public_hex
    config = tiny_config(participants=({"pubkey": me, "energy": PROFILE},))
    node = Node(tmp_path / "node", config, quiet=True, port=5998)
    try:
        node.count_work(1, sample_epochs=100)   # what participate_once reports after training
        node.count_work(hashes=50)              # what mine_once reports after a search
        client = create_app(node).test_client()
        energy = client.get("/status").get_json()["energy"]
        assert energy["declared"] and energy["profile"] == PROFILE
        assert energy["train_j"] == pytest.approx(100e-6) and energy["pow_j"] == pytest.approx(5e-6)
        assert energy["last_round"] == 1 and energy["hashes"] == 50
        detail = client.get("/rounds/1").get_json()["energy"]
        assert detail["sample_epochs"] == 100 and detail["total_j"] == pytest.approx(105e-6)
    finally:
        node.stop()


def test_undeclared_node_uses_the_default_profile(tmp_path):
    node = Node(tmp_path / "n", tiny_config(), quiet=True, port=5997)
    try:
        assert node.status()["energy"]["declared"] is False and node.energy_report(1) is None
    finally:
        node.stop()


def test_cli_genesis_with_selection_and_run_flags(tmp_path, capsys):
    import json

    from learningchain.cli import main as cli
    from learningchain.ledger.genesis import NetworkConfig
    dirs = ",".join(str(tmp_path / f"n{i}") for i in range(3))
    out = tmp_path / "g.json"
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out), "--participants", dirs,
                     "--selection", "energy-aware", "--select-k", "2"]) == 0
    config = NetworkConfig.from_dict(json.loads(out.read_text()))
    assert config.selection_policy[0] == "energy-aware" and config.selection_policy[1]["k"] == 2
    assert len(config.profiles) == 3 and load_or_create_key(tmp_path / "n0").public_hex in config.profiles
    assert cli.main(["genesis", "--nodes", "3", "--out", str(tmp_path / "h.json"),
                     "--selection", "top-k", "--select-k", "2"]) == 2  # a usage error
    assert "--participants" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["run", "--data-dir", "d", "--port", "5000", "--compression", "q8",
                                          "--skip-threshold", "0.5"])
    assert (args.compression, args.topk_fraction, args.skip_threshold) == ("q8", 0.1, 0.5)
