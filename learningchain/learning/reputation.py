"""Reputation: a node's security score, derived from the chain alone.

At each round close every validator already holds the round's updates (full
float32 weights, compressed ones decoded), the aggregate G(r) and the rule's
verdicts (``accepted`` / ``rejected`` in the commitment). From those, each
sender of the round earns integer points:

* **verdict**: +1 if the rule accepted the update; -8 if the rule rejected it
  *as a judgement*, i.e. when it rejected at most half of the round (Multi-Krum,
  Bulyan). Rules that keep only a few by design (Krum keeps one) or that failed
  to run say nothing about the others: 0. Rules that reject nobody (FedAvg and
  the coordinate-wise median and trimmed mean, which use every update) accept
  without judging, so for them the +1 goes only to updates *close* to the
  aggregate: squared distance below 4 times the round's median distance (2x
  in L2 norm). Without that, a sign-flip attacker that came in together with
  two others (enough to pull the coordinate-wise median, so that it is 13x the
  median distance, not the 16x of an outlier) earned +1 and ended at +1 or -2,
  trusted again (docs/experiments.md, "Why attackers came back").
* **distance rank**: updates are ranked by their squared L2 distance to G(r)
  (nearest first; ties by tx id). The quarter q = 4·rank // n gives +2, +1, 0, -3.
* **outlier**: -4 more when the distance is at least 16 times the median
  distance of the round (4x in L2 norm): a sign-flip or scaling is far out,
  a noisy but honest update is not.

The score decays by an eighth per round the sender takes part in
(``score - score // 8``, integer floor) so that behaviour counts more than
history. Distances are computed with ``math.fsum`` over the elementwise IEEE
squares (correctly rounded, so identical on every machine) and only their
order and the integer comparisons ``16 * median <= d`` and ``d < 4 * median``
are used: no float is formatted or hashed. Skips (signed "nothing to add" txs)
earn 0 but count as taking part.

What the score cannot include: *signing something invalid*. A tx with a bad
signature, a wrong shape, non-finite weights, a wrong base or round, or from an
unselected sender is refused at submit and by every validator before it can be
in a block, so it never reaches the chain; each node sees only the invalid txs
that happened to reach it, and a score built on them would differ between
nodes (and anyone could forge "invalid txs from X": an invalid signature proves
nothing about who sent it). The one misbehaviour that *is* provable from
validly signed data, equivocation (two different signed updates from one
sender for one round), cannot be on chain either: a block may carry one update
per sender and round (TX_DUPLICATE_SENDER), and no evidence tx type exists.
So the score is built only from what every validator holds: the rule's
verdicts, the distances to the aggregate and the outlier test. Pure: no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

ACCEPTED, REJECTED = 1, -8
QUARTER_POINTS = (2, 1, 0, -3)
OUTLIER, OUTLIER_FACTOR = -4, 16
CLOSE_FACTOR = 4  # accept-all rules: +1 only below 4x the median squared distance


@dataclass(frozen=True)
class Record:
    """What the chain says about one sender (all integers)."""
    score: int = 0
    accepted: int = 0
    rejected: int = 0
    outliers: int = 0
    rounds: int = 0       # rounds with an update or a skip
    samples: int = 0      # last self-reported sample count
    spent_nj: int = 0     # planned energy of the rounds taken part in (see selection)
    last_selected: int = 0  # the last round the sender was selected for (0: never; see selection)


@dataclass(frozen=True)
class Contribution:
    """One update of a closing round, as reputation sees it."""
    id: str
    sender: str
    weights: Mapping[str, np.ndarray]
    num_samples: int


def _flat(weights: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(weights[k], dtype=np.float64).reshape(-1) for k in sorted(weights)])


def squared_distance(weights: Mapping[str, np.ndarray], model: Mapping[str, np.ndarray]) -> float:
    diff = _flat(weights) - _flat(model)
    return math.fsum((diff * diff).tolist())


def round_points(contribs: Sequence[Contribution], model: Mapping[str, np.ndarray],
                 accepted: Sequence[str], rejected: Mapping[str, str]) -> dict[str, tuple[int, bool, bool, bool]]:
    """sender -> (points, accepted, rejected as a judgement, outlier) for one round."""
    n = len(contribs)
    if n == 0:
        return {}
    acc = set(accepted)
    judged = bool(acc) and len(rejected) * 2 <= n
    accept_all = not rejected  # the rule used every update: its "accepted" is no judgement
    dists = sorted((squared_distance(c.weights, model), c.id) for c in contribs)
    rank = {cid: i for i, (_, cid) in enumerate(dists)}
    med = dists[(n - 1) // 2][0]
    out = {}
    for c in contribs:
        d = dists[rank[c.id]][0]
        pts = QUARTER_POINTS[4 * rank[c.id] // n]
        is_acc, is_rej = c.id in acc, judged and c.id in rejected
        close = n < 3 or d <= 0 or d < CLOSE_FACTOR * med
        pts += ACCEPTED if is_acc and (close or not accept_all) else (REJECTED if is_rej else 0)
        outlier = n >= 3 and d >= OUTLIER_FACTOR * med and d > 0
        if outlier:
            pts += OUTLIER
        out[c.sender] = (pts, is_acc, is_rej, outlier)
    return out


def update_records(records: Mapping[str, Record], contribs: Sequence[Contribution],
                   skip_senders: Sequence[str], model: Mapping[str, np.ndarray],
                   accepted: Sequence[str], rejected: Mapping[str, str]) -> dict[str, Record]:
    """The records after one round close (a new dict; ``records`` is untouched)."""
    out = dict(records)
    points = round_points(contribs, model, accepted, rejected)
    samples = {c.sender: int(c.num_samples) for c in contribs}
    for sender in sorted(set(points) | set(skip_senders)):
        rec = out.get(sender, Record())
        pts, is_acc, is_rej, outlier = points.get(sender, (0, False, False, False))
        out[sender] = replace(rec, score=rec.score - rec.score // 8 + pts,
                              accepted=rec.accepted + is_acc, rejected=rec.rejected + is_rej,
                              outliers=rec.outliers + outlier, rounds=rec.rounds + 1,
                              samples=samples.get(sender, rec.samples))
    return out


def scores(records: Mapping[str, Record]) -> dict[str, int]:
    return {k: r.score for k, r in sorted(records.items())}
