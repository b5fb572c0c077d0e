"""The Sybil scenarios of tests/adversary/sybil.py on real node processes."""
from tests.adversary import SCENARIOS
import tests.adversary.sybil  # noqa: F401  (registers)


def test_sybil_flood(tmp_path):
    o = SCENARIOS["sybil-flood"](tmp_path)
    assert o.passed, o


def test_sybil_open_unstamped(tmp_path):
    o = SCENARIOS["sybil-open-unstamped"](tmp_path)
    assert o.passed, o


def test_l_nearest_miner_reference(tmp_path):
    o = SCENARIOS["l-nearest-miner-reference"](tmp_path)
    assert o.passed, o
