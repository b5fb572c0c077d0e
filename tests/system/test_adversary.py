"""The adversarial suite (tests/adversary/): every scenario, each against its own
network of real ``node.py run`` processes on 127.0.0.1. bench/hostile.py runs the
same scenarios and prints their table."""
import pytest

from tests.adversary import SCENARIOS, load_all

load_all()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_network_withstands(name, tmp_path):
    outcome = SCENARIOS[name](tmp_path)
    if not outcome.passed:  # the whole outcome: pytest would cut its repr in the middle
        pytest.fail(f"{outcome!r}", pytrace=False)
