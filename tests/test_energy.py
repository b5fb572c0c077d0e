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


def test_meter_charges_counter_growth_to_the_open_round():
    from learningchain.energy import EnergyMeter
    p = EnergyProfile(train_nj=1000, send_nj=10, recv_nj=5, hash_nj=100)
    m = EnergyMeter(p)
    m.observe(1, 0, 0, 0)
    m.trained(1, 50)
    m.observe(1, 1000, 2000, 10)
    m.observe(2, 1500, 2000, 10)  # only the growth since the last reading counts
    assert m.round_report(1)["total_j"] == pytest.approx(71e-6)
    assert m.round_report(2) == {"total_j": pytest.approx(5e-6), "train_j": 0, "comm_j": pytest.approx(5e-6),
                                 "pow_j": 0, "sample_epochs": 0, "sent": 500, "received": 0, "hashes": 0}
    rep = m.report()
    assert rep["declared"] and rep["sent"] == 1500 and rep["last_round"] == 2
    assert rep["total_j"] == pytest.approx(76e-6) and m.round_report(3) is None
    assert not EnergyMeter().declared
