"""The sync and compact-block scenarios of the adversarial suite (tests/adversary/sync.py)."""
from tests.adversary import SCENARIOS
import tests.adversary.sync  # noqa: F401  (registers)


def test_partition_heal(tmp_path):
    o = SCENARIOS["partition-heal"](tmp_path)
    assert o.passed, o


def test_compact_flood(tmp_path):
    o = SCENARIOS["compact-flood"](tmp_path)
    assert o.passed, o


def test_deep_fork(tmp_path):
    o = SCENARIOS["deep-fork"](tmp_path)
    assert o.passed, o
