"""Byzantine behaviours: each changes the update as specified; robust rules resist."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from learningchain.learning.aggregation import Update, aggregate
from learningchain.learning.attacks import ATTACKS, alie_z, poison_labels, poison_update
from learningchain.core.errors import ConfigError

BASE = OrderedDict(w=np.array([1.0, 1.0, 1.0], np.float32))
HONEST = OrderedDict(w=np.array([2.0, 0.0, 1.5], np.float32))


def test_names():
    assert ATTACKS == ("sign-flip", "scale", "gaussian", "alie", "label-flip")
    with pytest.raises(ConfigError, match="unknown attack"):
        poison_update("nope", HONEST, BASE, np.random.default_rng(0))


def test_sign_flip_and_scale():
    rng = np.random.default_rng(0)
    sf = poison_update("sign-flip", HONEST, BASE, rng, scale=2)
    np.testing.assert_allclose(sf["w"], [-1.0, 3.0, 0.0])
    sc = poison_update("scale", HONEST, BASE, rng, scale=10)
    np.testing.assert_allclose(sc["w"], [11.0, -9.0, 6.0])
    assert poison_update("sign-flip", HONEST, BASE, rng)["w"][0] == pytest.approx(1 - 4)


def test_gaussian_is_base_plus_seeded_noise():
    a = poison_update("gaussian", HONEST, BASE, np.random.default_rng(5), scale=0.5)
    b = poison_update("gaussian", HONEST, BASE, np.random.default_rng(5), scale=0.5)
    np.testing.assert_array_equal(a["w"], b["w"])
    expected = 1.0 + np.random.default_rng(5).normal(0, 0.5, size=3)
    np.testing.assert_allclose(a["w"], expected, rtol=1e-6)


def test_alie_with_benign_updates_and_self_estimate():
    benign = [OrderedDict(w=np.array(v, np.float32)) for v in ([0.0, 2.0], [2.0, 4.0])]
    base2 = OrderedDict(w=np.zeros(2, np.float32))
    z = alie_z(10, 2)  # s = 6 - 2 = 4, Phi^-1(0.6)
    assert z == pytest.approx(0.2533471, rel=1e-5)
    out = poison_update("alie", benign[0], base2, np.random.default_rng(0), benign=benign,
                        n_total=10, n_byzantine=2)
    np.testing.assert_allclose(out["w"], [1.0 - z, 3.0 - z], rtol=1e-6)
    alone = poison_update("alie", HONEST, BASE, np.random.default_rng(0))  # z = 1
    np.testing.assert_allclose(alone["w"], [2.0 - 1.0, 0.0 - 1.0, 1.5 - 0.5])


def test_label_flip():
    y = np.array([0, 1, 9, 4])
    np.testing.assert_array_equal(poison_labels(y, 10, np.random.default_rng(0)), [9, 8, 0, 5])
    with pytest.raises(ConfigError):
        poison_labels(np.array([1.5]), 0, np.random.default_rng(0))
    same = poison_update("label-flip", HONEST, BASE, np.random.default_rng(0))
    np.testing.assert_array_equal(same["w"], HONEST["w"])


def test_sign_flip_hurts_fedavg_not_median_or_krum():
    rng = np.random.default_rng(0)
    base = OrderedDict(w=np.zeros(4, np.float32))
    good_dir = np.array([1.0, 1.0, 1.0, 1.0])
    honest = [OrderedDict(w=(good_dir + rng.normal(0, 0.1, 4)).astype(np.float32))
              for _ in range(5)]
    bad = [poison_update("sign-flip", honest[i], base, rng) for i in range(2)]
    ups = [Update(f"{i:02d}", f"s{i}", w, 100) for i, w in enumerate(honest + bad)]
    fed = aggregate("fedavg", ups, {}).weights["w"]
    med = aggregate("median", ups, {}).weights["w"]
    krum = aggregate("krum", ups, {"f": 2}).weights["w"]
    assert float(fed @ good_dir) < 0          # FedAvg moved against the honest direction
    assert float(med @ good_dir) > 3.0        # robust rules keep it
    assert float(krum @ good_dir) > 3.0
