"""The explorer's HTML pages, one per resource (the index is
:mod:`learningchain.node.web.explorer`): block, tx, rounds and round,
participants and participant, model, peers, mempool, status and search.

Each ``*_page`` function takes the node and what the route resolved and returns
the rendered page; each read holds the node's lock only for its lookups and
is bounded (a page of rounds, one round's blocks, the mempool's txs). The JSON
documents of the same URLs are built by the routes (chain_routes.py,
peer_routes.py), never here, so they stay as they were. Every id is a link
(templates/_macros.html) and every participant is shown by
:func:`~learningchain.node.web.names.name_of`.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np
from flask import render_template
from markupsafe import Markup

from learningchain.core.crypto import address
from learningchain.core.encoding import is_hex
from learningchain.core.units import byte_size, metric_name, timestamp
from learningchain.ledger.txs import parse_tx
from learningchain.node.secagg_view import tx_kind, tx_summary
from learningchain.node.web import names
from learningchain.node.web.explorer import rounds_overview, verdict_of

#: rounds per page of a participant's updates.
PARTICIPANT_ROUNDS = 20


def render(node: Any, template: str, **ctx) -> str:
    """A page with the names helper bound to ``node`` (templates/_macros.html ``who``)."""
    return render_template(template, name=lambda k: names.name_of(node, k), pref=lambda k: names.ref_of(node, k),
                           **ctx)


# --- block and tx ----------------------------------------------------------------------

def block_page(node: Any, block) -> str:
    with node.lock:
        chain = node.chain
        entry = chain.entry(block.hash)
        on_main = chain.on_main_chain(block.hash)
        main = chain.index.main
        next_hash = main[block.height + 1] if on_main and block.height + 1 < len(main) else None
        in_round = entry.parent.state.round if entry is not None and entry.parent is not None else None
        phase = None
        if node.config.secure_aggregation is not None and entry is not None:
            phase = {"round": entry.state.round, "phase": entry.state.phase, "start": entry.state.phase_start}
    txs = [{"id": t.id, "sender": t.sender, "round": t.round, "num_samples": t.num_samples,
            "metrics": getattr(t, "metrics", None) or {}, "skip": t.is_skip, "type": tx_kind(t),
            "sa": tx_summary(t)} for t in block.txs]
    return render(node, "block.html", block=block, header=block.header.to_dict(), txs=txs, phase=phase,
                  commitment=block.commitment, time=timestamp(block.header.timestamp),
                  miner=address(block.header.miner), network=node.config.network, on_main=on_main, next_hash=next_hash, in_round=in_round,
                  size=block.size)


def tx_page(node: Any, found: dict) -> str:
    """``found``: the ``/txs/<id>`` document (``Node.find_tx``)."""
    tx = parse_tx(found["tx"])
    verdict = None
    if found["status"] == "confirmed":
        with node.lock:
            close = node.chain.round_close(tx.round)
            entry = node.chain.entry(close[1]) if close else None
            commitment = entry.commitment if entry is not None else None
        verdict = verdict_of(tx.id, tx_kind(tx), commitment) if commitment else {"verdict": "open", "reason": None}
    doc = found["tx"]
    weights = []
    if isinstance(doc.get("weights"), dict):
        for k, v in sorted(doc["weights"].items()):
            weights.append({"name": k, "shape": v.get("shape") if isinstance(v, dict) else ""})
    return render(node, "tx.html", tx=tx, kind=tx_kind(tx), status=found["status"], block=found.get("block"),
                  height=found.get("height"), verdict=verdict, size=tx.size, time=timestamp(tx.timestamp or None),
                  metrics=getattr(tx, "metrics", None) or {}, weights=weights,
                  scheme=doc.get("compression"), sa=found.get("secure_aggregation"))


# --- rounds ----------------------------------------------------------------------------

def rounds_page(node: Any, limit: int, start: int | None) -> str:
    page, current = rounds_overview(node, limit, start)
    first = page[0]["round"] if page else (start or 1)
    last = page[-1]["round"] if page else first
    prev_start = max(1, first - limit) if first > 1 else None
    next_start = last + 1 if last < current else None
    return render(node, "rounds.html", rounds=page, current=current, first=first, last=last, limit=limit,
                  prev_start=prev_start, next_start=next_start, label=metric_name(node.config.model_spec.task))


def round_page(node: Any, detail: dict) -> str:
    with node.lock:
        current = node.chain.tip_state.round
        main = node.chain.index.main
        opened_hash = main[detail["opened_at"]] if detail["opened_at"] < len(main) else None
    return render(node, "round.html", d=detail, current=current, opened_hash=opened_hash)


# --- participants ----------------------------------------------------------------------

def _record(node: Any, key: str | None) -> dict | None:
    with node.lock:
        records = node.chain.tip_state.records or {}
        rec = records.get(key) if key else None
    if rec is None:
        return None
    return {k: getattr(rec, k) for k in ("score", "accepted", "rejected", "outliers", "rounds", "samples",
                                         "spent_nj", "last_selected")}


def reputation_kept(node: Any) -> bool:
    """Does the chain keep reputation records (only under a selection policy)?"""
    return node.config.selection_policy[0] != "all"


def participant_row(node: Any, key: str) -> dict:
    """One participant as ``/participants`` lists it (``key``: a public key, or an
    address when the key is unknown)."""
    pubkey = key if len(key) == 66 else None
    profile = node.config.profiles.get(pubkey) if pubkey else None
    return {"name": names.name_of(node, key), "ref": names.ref_of(node, key), "pubkey": pubkey,
            "address": names.address_of(key), "listed": pubkey in names.listed(node),
            "this_node": pubkey == node.pubkey, "reputation": _record(node, pubkey),
            "energy_profile": profile.to_dict() if profile is not None else None}


def participant_keys(node: Any) -> list[str]:
    """The participants this node knows, as ``/participants`` lists them: the
    genesis list in order, then the node itself if it is not listed, then any
    other key the reputation records hold; on an open network (no list) also the
    senders of the newest :data:`PARTICIPANT_ROUNDS` rounds. Bounded."""
    keys = names.listed(node)
    with node.lock:
        recorded = sorted(node.chain.tip_state.records or {})
        if not keys:  # an open network: the senders of the newest rounds (bounded)
            current = node.chain.tip_state.round
            for r in range(max(1, current - PARTICIPANT_ROUNDS + 1), current + 1):
                summary = node.chain.round_summary(r) or {"updates": []}
                recorded += [u["sender"] for u in summary["updates"]]
    seen = set(keys)
    for k in [node.pubkey] + recorded:
        if k not in seen:
            keys.append(k)
            seen.add(k)
    return keys


def known_participant(node: Any, who: str) -> str | None:
    """The public key of the participant ``who`` names (a name, a public key or an
    address) if this node knows it: one of :func:`participant_keys` or the sender
    of a tx in its mempool; None for any other string, even a well-formed key or
    address (search answers "no match" rather than an empty participant page)."""
    key = names.pubkey_of(node, who)
    listed = names.listed(node)
    if key is not None and (key in listed or key == node.pubkey):
        return key
    if not (is_hex(who, 20) or is_hex(who, 33)):
        return None
    with node.lock:
        pool = {t.sender for t in node.ledger.mempool}
    for k in dict.fromkeys(participant_keys(node)[len(listed):] + sorted(pool)):
        if k == who or (len(who) == 40 and address(k) == who):
            return k
    return None


def participants_doc(node: Any) -> dict:
    """``/participants``: :func:`participant_keys`, each as :func:`participant_row`."""
    return {"listed": len(names.listed(node)), "reputation": reputation_kept(node),
            "participants": [participant_row(node, k) for k in participant_keys(node)]}


def participants_page(node: Any, doc: dict) -> str:
    return render(node, "participants.html", participants=doc["participants"], listed=doc["listed"],
                  reputation=doc["reputation"])


def participant_doc(node: Any, ref: str, start: int | None, limit: int = PARTICIPANT_ROUNDS) -> dict | None:
    """``/participants/<ref>``: who it is, its reputation and energy, and its txs in
    rounds ``start .. start + limit - 1`` (default: the newest ``limit``) with their
    verdicts. Bounded: one round summary per round of the page."""
    key = names.pubkey_of(node, ref)
    if key is None and not (len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)):
        return None
    who = key or ref
    addr = names.address_of(who)
    with node.lock:
        current = node.chain.tip_state.round
    first = max(1, current - limit + 1) if start is None else max(1, start)
    last = min(current, first + limit - 1)
    updates = []
    for r in range(first, last + 1):
        with node.lock:
            summary = node.chain.round_summary(r)
            if summary is None:
                continue
            mine = [u for u in summary["updates"] if address(u["sender"]) == addr]
            kinds = {}
            for u in mine:
                found = node.chain.find_tx(u["id"])
                kinds[u["id"]] = tx_kind(found[0] if found else None)
        commitment = summary["commitment"] if summary["status"] == "closed" else None
        for u in mine:
            key = key or u["sender"]
            updates.append({"round": r, "id": u["id"], "height": u["height"], "num_samples": u["num_samples"],
                            "type": kinds[u["id"]], **verdict_of(u["id"], kinds[u["id"]], commitment)})
    if not updates and known_participant(node, who) is None:
        return None  # no key, record or update of it known here: 404, not an empty page
    doc = participant_row(node, key or addr)
    doc.update(updates=updates, first=first, last=last, limit=limit, current=current,
               energy=node.energy_report() if key == node.pubkey else None)
    return doc


def participant_page(node: Any, doc: dict, ref: str) -> str:
    limit = doc["limit"]
    prev_start = max(1, doc["first"] - limit) if doc["first"] > 1 else None
    next_start = doc["last"] + 1 if doc["last"] < doc["current"] else None
    return render(node, "participant.html", p=doc, ref=ref, first=doc["first"], last=doc["last"],
                  prev_start=prev_start, next_start=next_start, reputation_kept=reputation_kept(node))


# --- model, peers, mempool, status, search -------------------------------------------------

def model_page(node: Any, r: int, digest: str, weights, metrics: dict | None) -> str:
    arrays = []
    for k, a in weights.items():
        a64 = np.asarray(a, dtype=np.float64)
        arrays.append({"name": k, "shape": "x".join(map(str, a.shape)) or "scalar", "dtype": str(np.asarray(a).dtype),
                       "size": int(a.size), "norm": float(math.sqrt(float(np.sum(a64 * a64)))),
                       "min": float(a64.min()) if a.size else 0.0, "max": float(a64.max()) if a.size else 0.0,
                       "mean": float(a64.mean()) if a.size else 0.0})
    params = sum(x["size"] for x in arrays)
    return render(node, "model.html", round=r, digest=digest, metrics=metrics, arrays=arrays, params=params,
                  size=4 * params, spec=node.config.model_spec)


def traffic_table(traffic: dict) -> Markup:
    """``traffic`` (``/status`` or ``/peers``) as a table: one row per message type."""
    rows = "".join(f'<tr><td>{escape(k)}</td><td class="num">{byte_size(v.get("sent"))}</td>'
                   f'<td class="num">{byte_size(v.get("received"))}</td><td class="num">{v.get("messages", "")}</td>'
                   f'</tr>' for k, v in sorted((traffic.get("by_type") or {}).items()))
    total = (f'<tr><th>total</th><th class="num">{byte_size(traffic.get("sent"))}</th>'
             f'<th class="num">{byte_size(traffic.get("received"))}</th><th></th></tr>')
    def text(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k} {n}" for k, n in sorted(v.items())) or "none"
        return str(v)
    labels = {"dropped": "gossip sends dropped (full queues)", "queued": "gossip sends queued now",
              "refused_peers": "offered peers refused"}
    extra = "".join(f'<tr><td>{labels[k]}</td><td colspan="3">{escape(text(traffic[k]))}</td></tr>'
                    for k in labels if k in traffic)
    return Markup(f'<table id="traffic"><tr><th>message</th><th class="num">sent</th><th class="num">received</th>'
                  f'<th class="num">messages</th></tr>{rows}{total}{extra}</table>')


def peer_graph(self_url: str, peers: list[dict]) -> tuple[Markup, str]:
    """``svg#peer-graph``: this node in the centre, its peers on a circle around
    it, a line to each; a line between two peers when one lists the other (the
    lists peers sent us in answer to our announce). Without any list: a star."""
    w, h = 560, 420
    cx, cy = w / 2, h / 2
    radius = 150
    urls = [p["url"] for p in peers]
    pos = {self_url: (cx, cy)}
    for i, u in enumerate(urls):
        a = 2 * math.pi * i / max(1, len(urls)) - math.pi / 2
        pos[u] = (cx + radius * math.cos(a), cy + radius * math.sin(a))
    links = {(self_url, u) for u in urls}
    known = False
    for p in peers:
        for other in p.get("peers") or ():
            known = True
            if other in pos and other != p["url"] and (other, p["url"]) not in links:
                links.add((p["url"], other))
    lines = "".join(f'<line x1="{pos[a][0]:.1f}" y1="{pos[a][1]:.1f}" x2="{pos[b][0]:.1f}" y2="{pos[b][1]:.1f}" '
                    f'data-from="{escape(a)}" data-to="{escape(b)}"/>' for a, b in sorted(links))

    def node_g(u: str, cls: str, label: str) -> str:
        x, y = pos[u]
        return (f'<g class="{cls}" data-url="{escape(u)}"><circle cx="{x:.1f}" cy="{y:.1f}" r="9"/>'
                f'<text x="{x:.1f}" y="{y + 24:.1f}" text-anchor="middle">{escape(label)}</text>'
                f'<title>{escape(u)}</title></g>')
    gs = node_g(self_url, "peer self", "this node") + "".join(
        node_g(u, "peer", u.split("://", 1)[-1]) for u in urls)
    svg = (f'<svg id="peer-graph" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-label="this node and its peers">{lines}{gs}</svg>')
    note = ("Lines between peers: the peer lists they sent us." if known else
            "A star: no peer has sent us its own peer list yet.")
    return Markup(svg), note


def peers_page(node: Any, doc: dict) -> str:
    graph, note = peer_graph(doc["self"], doc["peers"])
    return render(node, "peers.html", self_url=doc["self"], peers=doc["peers"], graph=graph, graph_note=note,
                  traffic_table=traffic_table(doc["traffic"]))


def mempool_page(node: Any, doc: dict) -> str:
    return render(node, "mempool.html", doc=doc)


def status_page(node: Any, s: dict) -> str:
    t = s.get("timings") or {}
    timings = [(k[:-2], t[k], t.get(k[:-2] + "_count", "")) for k in sorted(t) if k.endswith("_s")]
    return render(node, "status.html", s=s, traffic_table=traffic_table(s.get("traffic") or {}), timings=timings)


def search_page(node: Any, query: str, matches: list[dict], note: str | None = None) -> str:
    return render(node, "search.html", query=query, matches=matches, note=note)
