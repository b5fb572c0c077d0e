"""The block explorer: server-rendered HTML (Jinja templates under
``learningchain/templates/``), no JavaScript and no external assets.

``GET /`` shows the latest blocks, every round with its accepted and rejected
updates (and why), and a line chart of the global metric per round drawn as
inline SVG built here in Python. The other pages (block, tx, rounds, ...) are
rendered by :mod:`learningchain.node.web.pages`; :func:`rounds_overview`,
:func:`round_detail` and :func:`verdict_of` here serve both the JSON and the pages.
"""
from __future__ import annotations

import time
from html import escape

from flask import Blueprint, current_app, render_template
from markupsafe import Markup

from learningchain.core.crypto import address
from learningchain.node.secagg_view import round_sa, tx_kind
from learningchain.node.web.distances import round_distances

# --- read-side views (shared by the JSON API and the HTML pages) ---------------

#: rounds per ``/rounds`` page by default, and at most.
ROUNDS_PAGE, MAX_ROUNDS_PAGE = 50, 200


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
    with node.lock:
        summary = node.chain.round_summary(r)
        if summary is None:
            return None
        updates = []
        c = summary.get("commitment") or {}
        for u in summary["updates"]:
            found = node.chain.find_tx(u["id"])
            tx = found[0] if found else None
            updates.append({"id": u["id"], "sender": u["sender"], "address": address(u["sender"]),
                            "height": u["height"], "num_samples": u["num_samples"],
                            "skip": bool(tx is not None and tx.is_skip), "type": tx_kind(tx),
                            "metrics": getattr(tx, "metrics", None) or {},
                            **verdict_of(u["id"], tx_kind(tx), c if summary["status"] == "closed" else None)})
        sa = round_sa(node.chain, node.config, summary) if node.config.secure_aggregation else None
    distance = round_distances(node, summary)
    for u in updates:
        u["distance"] = distance.get(u["id"])
    detail = {"round": r, "status": summary["status"], "opened_at": summary["opened_at"],
              "closed_at": summary["closed_at"], "block": summary["block"], "updates": updates,
              "accepted": c.get("accepted", []), "rejected": c.get("rejected", {}),
              "rule": c.get("rule"), "model_digest": c.get("model_digest"),
              # the rule and its parameters: the commitment's once closed, else the genesis'
              "aggregation": {"rule": c.get("rule", node.config.rule),
                              "params": dict(c.get("params", node.config.params))},
              "metrics": node.metrics.get(r),
              "not_included": node.ledger.mempool.not_included.get(r, [])}  # seen here, left out
    if sa is not None:
        detail["secure_aggregation"] = sa
    if "selected" in summary:
        detail.update(selected=summary["selected"], selected_next=c.get("selected_next"))
    if "selected" in summary or "skipped" in c:  # skips are visible under any policy
        detail["skipped"] = c.get("skipped", [])
    return detail


explorer = Blueprint("explorer", __name__, template_folder="templates")
CHART_W, CHART_H, PAD = 1100, 300, 56
#: the chart shows the newest rounds only (a page must not grow with the chain).
CHART_ROUNDS = 500


def axis_range(ys: list[float]) -> tuple[float, float]:
    """The y-axis: the data's range plus 5 % on each side, so small changes
    (0.95 -> 0.98 accuracy) fill the chart instead of a flat line at the top."""
    lo, hi = min(ys), max(ys)
    margin = (hi - lo) * 0.05 or max(abs(hi) * 0.01, 1e-3)
    return lo - margin, hi + margin


def metric_chart(points: list[tuple[int, float]], label: str) -> Markup:
    """An SVG polyline of (round, value) points, full width, y-axis scaled to the
    data with its min and max marked."""
    if not points:
        return Markup('<p class="muted">No round has been evaluated yet.</p>')
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = axis_range(ys)
    span_x, span_y = max(1, x1 - x0), max(1e-9, y1 - y0)

    def sx(x):
        return PAD + (x - x0) / span_x * (CHART_W - 2 * PAD)

    def sy(y):
        return CHART_H - PAD - (y - y0) / span_y * (CHART_H - 2 * PAD)

    poly = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3"><title>round {x}: {y:.4f}</title></circle>'
                   for x, y in points)
    lo, hi = min(ys), max(ys)
    grid = "".join(
        f'<line x1="{PAD}" x2="{CHART_W - PAD}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" class="grid"/>'
        f'<text x="{PAD - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.4f}</text>'
        for v in (y0 + (y1 - y0) * k / 4 for k in range(5)))
    marks = "".join(
        f'<line x1="{PAD}" x2="{CHART_W - PAD}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" class="mark"/>'
        f'<text x="{CHART_W - PAD}" y="{sy(v) + dy:.1f}" text-anchor="end" class="mark">{name} {v:.4f}</text>'
        for name, v, dy in (("max", hi, -5), ("min", lo, 14)))
    ticks = "".join(f'<text x="{sx(x):.1f}" y="{CHART_H - PAD + 18}" text-anchor="middle">{x}</text>'
                    for x in xs if len(xs) <= 30 or x in (x0, x1) or x % max(1, len(xs) // 15) == 0)
    svg = (f'<svg viewBox="0 0 {CHART_W} {CHART_H}" width="100%" preserveAspectRatio="xMidYMid meet" '
           f'role="img" aria-label="global {escape(label)} per round">{grid}{marks}'
           f'<polyline points="{poly}" fill="none" stroke="#2563eb" stroke-width="2"/>{dots}{ticks}'
           f'<text x="{CHART_W / 2}" y="{CHART_H - 10}" text-anchor="middle">round</text>'
           f'<text x="{CHART_W / 2}" y="18" text-anchor="middle">global {escape(label)} on this node\'s '
           f'held-out set (axis scaled to the data)</text></svg>')
    return Markup(svg)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


@explorer.get("/")
def index():
    node = current_app.config["NODE"]
    status = node.status()
    with node.lock:
        blocks = node.chain.main_chain(max(0, node.chain.height - 29), 30)[::-1]
    rows = [{"height": b.height, "hash": b.hash, "time": _when(b.header.timestamp), "txs": len(b.txs),
             "miner": address(b.header.miner),
             "round": b.commitment.get("round") if isinstance(b.commitment, dict) else None}
            for b in blocks]
    rounds = rounds_overview(node, limit=50)[0][::-1]
    label = "accuracy" if node.config.model_spec.task == "classification" else "rmse"
    points = sorted((r, m[label]) for r, m in dict(node.metrics).items() if label in m)[-CHART_ROUNDS:]
    return render_template("explorer.html", status=status, blocks=rows, rounds=rounds,
                           chart=metric_chart(points, label), label=label, address=address)
