"""Energy profiles (genesis form, integers) and the per-round estimate."""
import pytest

from learningchain.energy import (Activity, EnergyProfile, planned_cost_nj, random_profiles,
                                  round_energy)
from learningchain.errors import ConfigError


def test_profile_round_trip_and_renewable_schedule():
    p = EnergyProfile.from_dict({"train_nj": 5, "send_nj": 2, "recv_nj": 1, "budget_nj": 100,
                                 "renewable": {"period": 4, "on": [3, 0]}})
    assert EnergyProfile.from_dict(p.to_dict()) == p and p.renewable_on == (0, 3)
    assert [p.green(r) for r in range(1, 6)] == [True, False, False, True, True]
    for bad in ({"train_nj": 1.5, "send_nj": 1, "recv_nj": 1}, {"train_nj": 1, "send_nj": 1},
                {"train_nj": 1, "send_nj": 1, "recv_nj": 1, "watts": 3},
                {"train_nj": 1, "send_nj": 1, "recv_nj": 1, "renewable": {"period": 2, "on": [2]}}):
        with pytest.raises(ConfigError):
            EnergyProfile.from_dict(bad)


def test_round_energy_counts_every_activity():
    p = EnergyProfile(train_nj=1000, send_nj=10, recv_nj=5, hash_nj=100)
    act = {"a": Activity(sample_epochs=50, sent=1000, received=2000, hashes=10), "b": Activity()}
    doc = round_energy({"a": p, "b": p}, act)
    assert doc["train_j"] == pytest.approx(50e-6) and doc["pow_j"] == pytest.approx(1e-6)
    assert doc["comm_j"] == pytest.approx(20e-6)
    assert doc["total_j"] == pytest.approx(71e-6) and doc["per_node"]["b"] == 0
    assert planned_cost_nj(p, 10, 2, 100, 50) == 1000 * 20 + 10 * 100 + 5 * 50


def test_random_profiles_are_seeded_and_heterogeneous():
    a, b = random_profiles(20, 7), random_profiles(20, 7)
    assert a == b and a != random_profiles(20, 8)
    assert max(p.train_nj for p in a) > 3 * min(p.train_nj for p in a)
