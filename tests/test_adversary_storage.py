"""The storage area's attacks on real node processes (tests/adversary/storage.py)."""
from tests.adversary import SCENARIOS
import tests.adversary.storage  # noqa: F401  (registers)


def test_memory_growth(tmp_path):
    o = SCENARIOS["memory-growth"](tmp_path)
    assert o.passed, o


def test_miner_death(tmp_path):
    o = SCENARIOS["miner-death"](tmp_path)
    assert o.passed, o
