"""Reputation from round outcomes: deterministic integers, outliers and rejected updates lose."""
from collections import OrderedDict

import numpy as np

from learningchain.learning.reputation import Contribution, Record, round_points, update_records


def w(v):
    return OrderedDict(W0=np.full((2, 2), v, np.float32), b0=np.full(2, v, np.float32))


def test_far_and_rejected_updates_lose_points_deterministically():
    model = w(0.0)
    cs = [Contribution(f"{i:02x}" * 32, f"s{i}", w(0.01 * (i + 1)), 10) for i in range(7)]
    cs.append(Contribution("ff" * 32, "bad", w(-4.0), 10))
    accepted = [c.id for c in cs[:-1]]
    rejected = {"ff" * 32: "far"}
    pts = round_points(cs, model, accepted, rejected)
    assert pts["bad"][0] < 0 and pts["bad"][2] and pts["bad"][3]  # rejected and outlier
    assert pts["s0"][0] > pts["s6"][0] > pts["bad"][0]
    recs = update_records({}, cs, ["skipper"], model, accepted, rejected)
    again = update_records({}, list(reversed(cs)), ["skipper"], model, accepted, rejected)
    assert recs == again and recs["skipper"] == Record(rounds=1)
    assert recs["bad"].score < 0 and recs["bad"].rejected == 1 and recs["s0"].samples == 10


def test_krum_like_narrow_acceptance_is_not_a_judgement():
    model = w(0.0)
    cs = [Contribution(f"{i:02x}" * 32, f"s{i}", w(0.01 * (i + 1)), 10) for i in range(4)]
    pts = round_points(cs, model, [cs[0].id], {c.id: "not chosen" for c in cs[1:]})
    assert not any(p[2] for p in pts.values())


def test_score_decays():
    model = w(0.0)
    cs = [Contribution("aa" * 32, "x", w(0.0), 1)]
    recs = {"x": Record(score=80)}
    out = update_records(recs, cs, [], model, ["aa" * 32], {})
    assert out["x"].score == 80 - 10 + 3 and recs["x"].score == 80


def test_accept_all_rules_credit_only_updates_close_to_the_aggregate():
    """Median/trimmed mean/FedAvg reject nobody: +1 only below 4x the median squared
    distance. An attacker pulled close enough to dodge the 16x outlier line (13x,
    as on seed 1 of bench/selection.py) earns nothing for being "accepted"."""
    model = w(0.0)
    cs = [Contribution(f"{i:02x}" * 32, f"s{i}", w(0.1), 10) for i in range(5)]
    cs.append(Contribution("ee" * 32, "far", w(0.1 * 13 ** 0.5), 10))  # 13x the median d^2
    everyone = [c.id for c in cs]
    pts = round_points(cs, model, everyone, {})
    assert pts["far"] == (-3, True, False, False)  # far quarter, no +1, not an outlier
    assert pts["s0"][0] == 2 + 1
    # the same distances under a rule that judged (rejected someone else): acceptance counts
    cs.append(Contribution("ff" * 32, "bad", w(-4.0), 10))
    judged = round_points(cs, model, everyone, {"ff" * 32: "far"})
    assert judged["far"][0] == 0 + 1 and judged["bad"][2] and judged["bad"][3]
