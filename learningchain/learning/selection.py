"""Participant selection: who may send an update in the next round.

The set selected for round r+1 is a deterministic function of the chain up to
the close of round r: the candidates (genesis ``participants``, else
``allow_list``), their reputation records (:mod:`learningchain.learning.reputation`),
their energy profiles and budgets (:mod:`learningchain.learning.energy`) and a seed::

    seed = SHA256(b"learningchain-select" || parent hash of the closing block (32 bytes) || u64 BE r+1)
    draw(key) = SHA256(seed || compressed key bytes)      (ties and random picks)

(the closing block's own hash cannot be the seed: its commitment lists the
selection, and the header hash commits to the commitment). Round 1 uses the
genesis hash in place of the parent hash. Policies (genesis ``selection``):

* ``all``: nobody is excluded (the default; nothing changes for old networks);
* ``random-k`` (``k``): the k smallest draws;
* ``top-k`` (``k``, ``explore``=0): the k - explore best scores (ties by draw),
  then ``explore`` random picks among the rest whose score is >= 0 (if too
  few, the best negative scores);
* ``energy-aware`` (``k``, ``min_k``, ``explore``=1, ``security_weight``=64,
  ``green_discount``=50, ``max_age``=0, ``tolerance``=4): candidates whose
  score is below ``-tolerance``, or that were outliers in more than a quarter
  of their rounds, are distrusted; those whose budget cannot pay
  one more round are ineligible. Among the trusted eligible ones, the *overdue*
  (not selected for ``max_age`` rounds or more; 0 means ceil(2n/k) for n
  candidates) that are *vouched for* (took part and have a score > 0) come
  first, longest waiting first (then cheapest), up to
  k - explore; the remaining places go to the cheapest by
  ``cost * 1024 // max(1, 1024 + security_weight * score)`` (cost =
  :func:`learningchain.learning.energy.planned_cost_nj`, cut by ``green_discount``
  percent when round r+1 is renewable for the node); then ``explore`` picks among
  the other trusted eligible ones: those with score >= 0 in draw order, then the
  negative ones best score first (protocol.md section 11). If that gives fewer than ``min_k``,
  distrusted eligible ones (best score first) and then over-budget ones (least
  spent first) fill up to ``min_k``.

  Why the rotation and the tolerance: ranking by cost alone picks the same
  cheap nodes every round, and distrusting every negative score shuts out for
  good each honest node that once landed in the far quarter (-3 + 1 = -2) and
  so is never selected again to earn it back; the model then learns from a
  fraction of the data (1.3 to 2 points short of ``all`` on digits with 20
  nodes). A sign-flip or scaling attacker loses 6 or more points in its first
  round (far quarter, outlier, rejected) and stays out; an honest node's
  single bad draw does not. Bounding every vouched-for node's wait covers the
  data once per window while the cheap nodes fill the rest, in the spirit of
  Oort's staleness term (Lai et al., OSDI 2021). The rotation used to take
  never-seen nodes too (last selected "round 0" makes them all overdue at once):
  in round 5 it brought in three never-seen attackers of 8, enough to pull the
  coordinate-wise median so that two of them were neither outliers nor in the
  far quarter, and they came back at round 10 (docs/experiments.md).

All arithmetic is on integers. Pure: no I/O.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any, Mapping, Sequence

from learningchain.learning.energy import DEFAULT_PROFILE, EnergyProfile, planned_cost_nj
from learningchain.core.errors import ConfigError
from learningchain.learning.reputation import Record

POLICIES = ("all", "random-k", "top-k", "energy-aware")
_PARAMS = {"all": {},
           "random-k": {"k": None},
           "top-k": {"k": None, "explore": 0},
           "energy-aware": {"k": None, "min_k": None, "explore": 1, "security_weight": 64,
                            "green_discount": 50, "max_age": 0, "tolerance": 4}}


def parse_selection(doc: Any) -> tuple[str, dict]:
    """``{"policy", "params"}`` -> (policy, params with defaults filled); ConfigError."""
    if doc is None:
        return "all", {}
    if not isinstance(doc, Mapping) or set(doc) != {"policy", "params"} or not isinstance(doc["params"], Mapping):
        raise ConfigError('genesis: selection must be {"policy": NAME, "params": {...}}')
    policy = doc["policy"]
    if policy not in POLICIES:
        raise ConfigError(f"genesis: unknown selection policy {policy!r}; choose one of {', '.join(POLICIES)}")
    allowed = _PARAMS[policy]
    unknown = sorted(set(doc["params"]) - set(allowed))
    if unknown:
        raise ConfigError(f"genesis: selection {policy} has no parameter(s) {', '.join(unknown)}; "
                          f"it takes {', '.join(allowed) or 'none'}")
    params = {**allowed, **doc["params"]}
    if "min_k" in params and params["min_k"] is None:
        params["min_k"] = params["k"]
    for name, value in params.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 2**31:
            raise ConfigError(f"genesis: selection parameter {name} must be an integer >= 0, got {value!r}")
    if "k" in params and params["k"] < 1:
        raise ConfigError("genesis: selection k must be at least 1")
    if params.get("explore", 0) > params.get("k", 0):
        raise ConfigError("genesis: selection explore cannot exceed k")
    if "min_k" in params and not 1 <= params["min_k"] <= params["k"]:
        raise ConfigError("genesis: selection min_k must be in [1, k]")
    if params.get("green_discount", 0) > 100:
        raise ConfigError("genesis: green_discount is a percentage in [0, 100]")
    return policy, params


def minimum_selected(policy: str, params: Mapping[str, int]) -> int | None:
    """The fewest senders a round can have selected (None: no restriction)."""
    if policy == "all":
        return None
    return params.get("min_k", params["k"])


def selection_seed(parent_hash: str, next_round: int) -> bytes:
    return hashlib.sha256(b"learningchain-select" + bytes.fromhex(parent_hash)
                          + next_round.to_bytes(8, "big")).digest()


def _draw(seed: bytes, key: str) -> bytes:
    return hashlib.sha256(seed + bytes.fromhex(key)).digest()


def round_cost(profile: EnergyProfile, record: Record, default_samples: int, epochs: int,
               update_bytes: int, model_bytes: int) -> int:
    return planned_cost_nj(profile, record.samples or default_samples, epochs, update_bytes, model_bytes)


def _median_samples(records: Mapping[str, Record]) -> int:
    known = sorted(r.samples for r in records.values() if r.samples > 0)
    return known[(len(known) - 1) // 2] if known else 1


def select(policy: str, params: Mapping[str, int], candidates: Sequence[str],
           records: Mapping[str, Record], profiles: Mapping[str, EnergyProfile], next_round: int,
           seed: bytes, *, epochs: int = 1, update_bytes: int = 0,
           model_bytes: int = 0) -> frozenset[str] | None:
    """The senders allowed in ``next_round`` (None: everyone, policy ``all``)."""
    if policy == "all":
        return None
    blank = Record()
    draw = {c: _draw(seed, c) for c in candidates}
    by_draw = sorted(candidates, key=lambda c: draw[c])
    k = min(params["k"], len(candidates))
    if policy == "random-k":
        return frozenset(by_draw[:k])
    score = {c: records.get(c, blank).score for c in candidates}
    explore = min(params.get("explore", 0), k)
    if policy == "top-k":
        best = sorted(candidates, key=lambda c: (-score[c], draw[c]))[:k - explore]
        return frozenset(best + _explore(by_draw, best, score, explore))
    default_samples = _median_samples(records)

    def cost(c: str) -> int:
        prof = profiles.get(c, DEFAULT_PROFILE)
        nj = round_cost(prof, records.get(c, blank), default_samples, epochs, update_bytes, model_bytes)
        return nj * (100 - params["green_discount"]) // 100 if prof.green(next_round) else nj

    costs = {c: cost(c) for c in candidates}

    def eligible(c: str) -> bool:
        budget = profiles.get(c, DEFAULT_PROFILE).budget_nj
        return budget is None or records.get(c, blank).spent_nj + costs[c] <= budget

    w = params["security_weight"]
    def trusts(c: str) -> bool:  # an outlier in over a quarter of its rounds is judged, not unlucky
        rec = records.get(c, blank)
        return score[c] >= -params["tolerance"] and rec.outliers * 4 <= rec.rounds

    trusted = [c for c in candidates if eligible(c) and trusts(c)]
    ranked = sorted(trusted, key=lambda c: (costs[c] * 1024 // max(1, 1024 + w * score[c]), draw[c]))
    last = {c: records.get(c, blank).last_selected for c in trusted}
    max_age = params.get("max_age") or -(-2 * len(candidates) // k)
    overdue = sorted((c for c in ranked if next_round - last[c] >= max_age and _vouched(records.get(c, blank))),
                     key=lambda c: last[c])
    chosen = overdue[:k - explore]
    first = set(chosen)
    chosen += [c for c in ranked if c not in first][:k - explore - len(chosen)]
    chosen += _explore([c for c in by_draw if c in set(trusted)], chosen, score, explore)
    if len(chosen) < params["min_k"]:
        taken = set(chosen)
        distrusted = sorted((c for c in candidates if eligible(c) and c not in taken),
                            key=lambda c: (-score[c], draw[c]))
        broke = sorted((c for c in candidates if not eligible(c)),
                       key=lambda c: (records.get(c, blank).spent_nj, draw[c]))
        chosen += (distrusted + broke)[:params["min_k"] - len(chosen)]
    return frozenset(chosen)


def _vouched(rec: Record) -> bool:
    """Positive evidence: took part at least once and ended with a score > 0.
    Only such nodes are brought back by the rotation; a never-seen node enters
    through the cost ranking or an exploration slot, one at a time, not all
    the never-seen ones together when they become "overdue"."""
    return rec.rounds > 0 and rec.score > 0


def _explore(by_draw: Sequence[str], taken: Sequence[str], score: Mapping[str, int], n: int) -> list[str]:
    """``n`` random picks (in draw order) among candidates not taken with score >= 0;
    if too few, the rest best score first (ties by draw), so a node that lost
    points as an attacker comes after an honest node that drew the far quarter."""
    taken_set = set(taken)
    rest = [c for c in by_draw if c not in taken_set]
    good = [c for c in rest if score[c] >= 0]
    bad = sorted((c for c in rest if score[c] < 0), key=lambda c: -score[c])  # stable: draw order kept
    return (good + bad)[:n]


def mark_selected(records: Mapping[str, Record], chosen: frozenset[str] | None,
                  round: int) -> dict[str, Record]:
    """Stamp ``last_selected = round`` on the chosen senders (the age energy-aware rotates on)."""
    out = dict(records)
    for c in sorted(chosen or ()):
        out[c] = replace(out.get(c, Record()), last_selected=round)
    return out


def charge(records: Mapping[str, Record], senders: Sequence[str], profiles: Mapping[str, EnergyProfile],
           *, epochs: int, update_bytes: int, model_bytes: int) -> dict[str, Record]:
    """Add each sender's planned cost of the round just closed to its ``spent_nj``."""
    out = dict(records)
    default_samples = _median_samples(records)
    for s in senders:
        rec = out.get(s, Record())
        nj = round_cost(profiles.get(s, DEFAULT_PROFILE), rec, default_samples, epochs, update_bytes,
                        model_bytes)
        out[s] = replace(rec, spent_nj=rec.spent_nj + nj)
    return out
