"""The consensus-rule attacks of tests/adversary/rules.py on real node processes."""
from tests.adversary import SCENARIOS
import tests.adversary.rules  # noqa: F401  (registers)


def test_nesting_bomb(tmp_path):
    o = SCENARIOS["nesting-bomb"](tmp_path)
    assert o.passed, o


def test_time_warp(tmp_path):
    o = SCENARIOS["time-warp"](tmp_path)
    assert o.passed, o
