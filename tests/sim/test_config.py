"""SimConfig: the sample count of a run (synthetic sets sized to the node count)
and its one-line refusals."""
from __future__ import annotations

import pytest

from learningchain.core.errors import ConfigError
from learningchain.learning import data
from learningchain.sim.config import SimConfig


def test_samples_default_scales_with_nodes_for_synthetic_sets_only():
    assert SimConfig(nodes=30, dataset="synthetic-classification").n_samples == data.SYNTHETIC_SAMPLES
    big = SimConfig(nodes=1000, dataset="synthetic-classification")
    assert big.n_samples == big.generate_samples == data.default_samples("synthetic-classification", 1000)
    assert SimConfig(nodes=30, dataset="synthetic-regression", samples=900).generate_samples == 900
    digits = SimConfig(nodes=4)
    assert (digits.n_samples, digits.generate_samples) == (1797, None)  # fixed size: nothing generated


@pytest.mark.parametrize("kw,words", [
    ({"nodes": 1000, "dataset": "digits"}, "too small for 1000 nodes"),
    ({"nodes": 10, "dataset": "diabetes", "samples": 300}, "cannot be resized"),
    ({"nodes": 1000, "dataset": "synthetic-classification", "samples": 5000}, "at least 6667"),
    ({"nodes": 10, "dataset": "synthetic-classification", "samples": "many"}, "positive integer")])
def test_bad_sizes_are_one_line_config_errors(kw, words):
    with pytest.raises(ConfigError, match=words) as exc:
        SimConfig.from_dict(kw, "flags")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("flags: ")
