"""The block explorer: server-rendered HTML (Jinja templates under
``templates/``), no external assets.

The index ``GET /`` (its chart, live updates and baselines) is
:mod:`learningchain.node.web.index_page`; the other pages (block, tx, rounds, ...)
are rendered by :mod:`learningchain.node.web.pages`; :func:`rounds_overview`,
:func:`round_detail` and :func:`verdict_of` here serve both the JSON and the pages.
"""
from __future__ import annotations

from flask import Blueprint

from learningchain.core.crypto import address
from learningchain.node.secagg_view import round_sa, tx_kind
from learningchain.node.web.distances import round_distances

# --- read-side views (shared by the JSON API and the HTML pages) ---------------

#: rounds per ``/rounds`` page by default, and at most.
ROUNDS_PAGE, MAX_ROUNDS_PAGE = 50, 200
#: an open round's mempool txs listed at most by ``/rounds/<r>``.
MEMPOOL_SHOWN = 200


def rounds_overview(node, limit: int = ROUNDS_PAGE, start: int | None = None) -> tuple[list[dict], int]:
    """Rounds ``start .. start + limit - 1`` (default: the newest ``limit``), oldest
    first, and the current round, from the chain's kept tx ids and commitments
    (:meth:`Chain.round_rows`, bounded by the round index: no block body is read
    from the store). A page costs O(blocks of its rounds) under the node's lock,
    whatever the chain's length (issue 10, item 13: a whole-chain walk took
    164 ms at 80k blocks)."""
    limit = max(1, min(limit, MAX_ROUNDS_PAGE))
    with node.lock:
        current = node.chain.tip_state.round
        first = max(1, current - limit + 1) if start is None else max(1, start)
        last = min(current, first + limit - 1)
        rows = node.chain.round_rows(first, last)
    out = []
    for r in range(first, last + 1):
        info = rows.get(r, {"updates": 0, "skipped": 0})
        c = info.get("commitment") or {}
        out.append({"round": r, "status": "closed" if c else "open", "closed_at": info.get("closed_at"),
                    "block": info.get("block"), "updates": info["updates"], "skipped": info["skipped"],
                    "accepted": len(c.get("accepted", [])), "rejected": len(c.get("rejected", {})),
                    "rejected_reasons": c.get("rejected", {}), "accepted_ids": c.get("accepted", []),
                    "model_digest": c.get("model_digest"), "metrics": node.metrics.get(r),
                    "secure_aggregation": dict(c["secure_aggregation"], failed=c.get("failed"))
                    if isinstance(c.get("secure_aggregation"), dict) else None})
    return out, current


def verdict_of(txid: str, kind: str, commitment: dict | None) -> dict:
    """An update's ``verdict`` in its round and the ``reason``: "open" until the
    round closes; then "accepted" or "rejected" (the rule's reason) as the
    commitment says, else "not-counted" (a skip, or a secure-aggregation setup,
    unmask or dropped input: nothing of it entered G(r))."""
    if commitment is None:
        return {"verdict": "open", "reason": None}
    if txid in commitment.get("accepted", ()):
        return {"verdict": "accepted", "reason": None}
    if txid in commitment.get("rejected", {}):
        return {"verdict": "rejected", "reason": commitment["rejected"][txid]}
    why = {"skip": "skip: the sender had nothing to add", "setup": "secure-aggregation setup",
           "unmask": "secure-aggregation unmask"}.get(kind, "not counted in the aggregate (dropped)")
    return {"verdict": "not-counted", "reason": why}


def round_detail(node, r: int) -> dict | None:
    txs: dict = {}  # filled by the summary: each block read once (a deep one comes from the store)
    with node.lock:
        summary = node.chain.round_summary(r, txs)
        if summary is None:
            return None
        updates = []
        c = summary.get("commitment") or {}
        for u in summary["updates"]:
            tx = txs.get(u["id"])
            updates.append({"id": u["id"], "sender": u["sender"], "address": address(u["sender"]),
                            "height": u["height"], "num_samples": u["num_samples"],
                            "skip": bool(tx is not None and tx.is_skip), "type": tx_kind(tx),
                            "metrics": getattr(tx, "metrics", None) or {},
                            **verdict_of(u["id"], tx_kind(tx), c if summary["status"] == "closed" else None)})
        pooled = []  # an open round's txs still in the mempool (bounded: MEMPOOL_SHOWN listed)
        if summary["status"] == "open":
            pooled = sorted((t for t in node.ledger.mempool if t.round == r), key=lambda t: t.id)
        sa = round_sa(node.chain, node.config, summary) if node.config.secure_aggregation else None
    distance, distance_note = round_distances(node, summary, txs)
    for u in updates:
        u["distance"] = distance.get(u["id"])
    detail = {"round": r, "status": summary["status"], "opened_at": summary["opened_at"],
              "closed_at": summary["closed_at"], "block": summary["block"], "updates": updates,
              "accepted": c.get("accepted", []), "rejected": c.get("rejected", {}),
              "rule": c.get("rule"), "model_digest": c.get("model_digest"),
              # the rule and its parameters: the commitment's once closed, else the genesis'
              "aggregation": {"rule": c.get("rule", node.config.rule),
                              "params": dict(c.get("params", node.config.params))},
              "metrics": node.metrics.get(r), "distance_note": distance_note,
              "not_included": node.ledger.mempool.not_included.get(r, [])}  # seen here, left out
    if summary["status"] == "open":
        detail["mempool"] = [{"id": t.id, "sender": t.sender, "address": address(t.sender), "height": None,
                              "num_samples": t.num_samples, "skip": t.is_skip, "type": tx_kind(t),
                              "metrics": getattr(t, "metrics", None) or {}, "verdict": "open",
                              "reason": "in mempool", "distance": None} for t in pooled[:MEMPOOL_SHOWN]]
        detail["mempool_count"] = len(pooled)
    if sa is not None:
        detail["secure_aggregation"] = sa
    if "selected" in summary:
        detail.update(selected=summary["selected"], selected_next=c.get("selected_next"))
    if "selected" in summary or "skipped" in c:  # skips are visible under any policy
        detail["skipped"] = c.get("skipped", [])
    return detail


explorer = Blueprint("explorer", __name__, template_folder="templates")
