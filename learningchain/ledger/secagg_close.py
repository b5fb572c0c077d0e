"""The close of a secure-aggregation round: the secrets rebuilt from the
revealed shares, the masks removed, the sum decoded into G(r) and the
commitment every validator recomputes bit for bit (docs/protocol.md section
14.6), plus the reputation update that replaces section 11's under a selection
policy (section 14.1).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import replace
from typing import Mapping

import numpy as np

from learningchain.core import ec, shamir
from learningchain.core.encoding import weights_digest
from learningchain.core.secagg_crypto import pair_seed, prg, self_seed
from learningchain.learning import secagg
from learningchain.learning.reputation import Record
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.secagg_round import SaView, Step

DISQUALIFIED = "secure-aggregation: sender disqualified by a proven complaint"


def model_size(model: Mapping[str, np.ndarray]) -> int:
    """d: the parameter count (arrays in sorted name order, C order)."""
    return sum(int(np.asarray(model[k]).size) for k in sorted(model))


def _first_t(view: SaView, t: int, pick) -> dict[int, int]:
    """{i(w): share} from the first t unmask senders (key order) whose ``pick`` is not null."""
    out: dict[int, int] = {}
    for w in sorted(view.unmasks):
        share = pick(view.unmasks[w])
        if share is not None:
            out[view.index[w]] = share
            if len(out) == t:
                break
    return out


def masked_sum(view: SaView, t: int, d: int) -> np.ndarray:
    """Σ_{v∈C} (y_v − prg(self_seed_v) − Σ_{u∈X} sign(v, u)·prg(pair_seed_vu))  mod 2^32."""
    c, x_d, dq = view.counted, view.dropped, view.disqualified
    m = {u: shamir.reconstruct(_first_t(view, t, lambda tx, j=j: tx.mask_shares[j])) for j, u in enumerate(x_d)}
    total = np.zeros(d, dtype=np.uint32)
    for pos, v in enumerate(c):
        b = shamir.reconstruct(_first_t(view, t, lambda tx, pos=pos: tx.self_shares[pos]))
        pairs = {}
        mv = view.setups[v].mask_key
        for u in x_d:
            pairs[u] = prg(pair_seed(view.round, ec.point_bytes(ec.mul(mv, m[u]))), d)
        for j, u in enumerate(dq):
            point = view.unmasks[v].seeds[j][0]  # type: ignore[index]
            pairs[u] = prg(pair_seed(view.round, ec.point_bytes(point)), d)
        total += secagg.unmask(view.inputs[v].input_array, prg(self_seed(b), d), pairs, v)
    return total


def new_model(model: "OrderedDict[str, np.ndarray]", total: np.ndarray, count: int,
              scale: int) -> "OrderedDict[str, np.ndarray]":
    """G(r) = float32(float64(G(r-1)) + float64(signed sum) / float64(scale·|C|)), per coordinate."""
    avg = secagg.decode_average(total, count, scale)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    off = 0
    for name in sorted(model):
        a = np.asarray(model[name])
        part = avg[off:off + a.size].reshape(a.shape)
        off += a.size
        out[name] = (a.astype(np.float64) + part).astype(np.float32)
    return OrderedDict((k, out[k]) for k in model)


def close_commitment(step: Step, state_round: int, config: NetworkConfig,
                     model: "OrderedDict[str, np.ndarray]", model_digest: str):
    """(commitment, G(r), digest) of the block that ends the round (``step.ends_round``)."""
    p = config.secure_aggregation
    assert p is not None and step.view is not None
    view = step.view
    input_ids = sorted(tx.id for tx in view.inputs.values())
    closed = view.input_closed
    sa = {"setups": list(view.sset), "counted": list(view.counted) if closed else [],
          "dropped": list(view.dropped) if closed else [],
          "disqualified": list(view.disqualified) if closed else [], "sum_digest": None}
    if step.failed is not None:
        accepted, rejected = [], {i: step.failed for i in input_ids}
        g, digest = model, model_digest
    else:
        total = masked_sum(view, p.threshold, model_size(model))
        sa["sum_digest"] = hashlib.sha256(total.astype("<u4").tobytes()).hexdigest()
        g = new_model(model, total, len(view.counted), p.scale)
        digest = weights_digest(g)
        accepted = sorted(view.inputs[v].id for v in view.counted)
        rejected = {view.inputs[u].id: DISQUALIFIED for u in view.disqualified if u in view.inputs}
    commitment = {"round": state_round, "rule": "fedavg", "params": dict(config.params), "updates": input_ids,
                  "accepted": accepted, "rejected": {i: rejected[i] for i in sorted(rejected)},
                  "model_digest": digest, "secure_aggregation": sa}
    if step.failed is not None:
        commitment["failed"] = step.failed
    return commitment, g, digest


def update_records(records: Mapping[str, Record], view: SaView, failed: bool) -> dict[str, Record]:
    """Section 14.1's reputation update: every setup sender ``rounds += 1``; counted
    ``score − floor(score/8) + 1``, ``accepted += 1``, ``samples`` ← its input's; disqualified
    ``score − floor(score/8) − 8``, ``rejected += 1``; every other setup sender (dropped, or
    all of a failed round but the disqualified) ``score − floor(score/8)``."""
    out = dict(records)
    closed = view.input_closed
    counted = set() if failed or not closed else set(view.counted)
    dq = set(view.disqualified) if closed else set()
    for s in view.sset:
        rec = out.get(s, Record())
        decay = rec.score - rec.score // 8
        if s in counted:
            rec = replace(rec, score=decay + 1, accepted=rec.accepted + 1,
                          samples=int(view.inputs[s].num_samples))
        elif s in dq:
            rec = replace(rec, score=decay - 8, rejected=rec.rejected + 1)
        else:
            rec = replace(rec, score=decay)
        out[s] = replace(rec, rounds=rec.rounds + 1)
    return out
