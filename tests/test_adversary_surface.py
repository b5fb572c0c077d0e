"""The surface scenarios of the adversarial suite (tests/adversary/surface.py):
slowloris, peer-table poisoning, a mining-template flood, on real node processes."""
from tests.adversary import SCENARIOS
import tests.adversary.surface  # noqa: F401  (registers)


def test_mining_flood(tmp_path):
    o = SCENARIOS["mining-flood"](tmp_path)
    assert o.passed, o


def test_slowloris(tmp_path):
    o = SCENARIOS["slowloris"](tmp_path)
    assert o.passed, o


def test_peer_poison(tmp_path):
    o = SCENARIOS["peer-poison"](tmp_path)
    assert o.passed, o
