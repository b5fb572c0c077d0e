"""Energy profiles (genesis form, integers) and the per-round estimate."""
import pytest

from learningchain.learning.energy import (Activity, EnergyProfile, planned_cost_nj, random_profiles,
                                  round_energy)
from learningchain.core.errors import ConfigError


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
    from learningchain.learning.energy import EnergyMeter
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


def test_random_profiles_take_the_hash_cost_without_changing_the_other_draws():
    a, b = random_profiles(5, 7), random_profiles(5, 7, hash_nj=9_000)
    assert {p.hash_nj for p in a} == {4_000} and {p.hash_nj for p in b} == {9_000}
    assert [p.train_nj for p in a] == [p.train_nj for p in b]


def test_simulator_hash_cost_is_configurable_and_prices_every_hash(tmp_path):
    """--hash-nj reaches every profile (participants and full nodes) and the pow
    joules scale with it: the same seed computes the same hashes."""
    from learningchain.sim import results
    from learningchain.cli import sim_commands as sim_cli
    from learningchain.sim.simulator import SimConfig

    with pytest.raises(ConfigError, match="hash_nj"):
        SimConfig(hash_nj=-1)
    runs = {}
    for nj in (4_000, 12_000):
        out = tmp_path / str(nj)
        assert sim_cli.main(["simulate", "--nodes", "3", "--rounds", "1", "--model", "softmax",
                             "--hash-nj", str(nj), "--no-baselines", "--out", str(out)]) == 0
        runs[nj] = results.read_results(out)
    doc = runs[12_000]
    assert doc["config"]["hash_nj"] == 12_000
    assert {p.get("hash_nj") for p in doc["config"]["energy_profiles"].values()} == {12_000}
    assert doc["config"]["hashes"] == runs[4_000]["config"]["hashes"] > 0
    pow_j = [r["rounds"][0]["energy"]["pow_j"] for r in (runs[4_000], doc)]
    assert pow_j[0] > 0 and pow_j[1] == pytest.approx(3 * pow_j[0])
