"""Read-only commands against a running node over its HTTP API:
``status chain block tx mempool peers model round``.

Each prints aligned plain-text tables (no extra dependencies) or, with
``--json``, the node's JSON answer unchanged for scripts. An unreachable node
or an error answer becomes one line and exit status 1 (see :mod:`.cli`).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Iterable, Sequence

import requests

from learningchain.core.errors import LearningChainError

TIMEOUT = (2.0, 10.0)


class NodeError(LearningChainError):
    """The node answered with an error document (or something that is not JSON)."""


class NotANode(NodeError):
    """The server answered, but not as a LearningChain node does."""


class NodeClient:
    """A tiny JSON client of one node's API. ``url`` is checked as ``--node`` is
    (:func:`learningchain.cli.argtypes.node_url`: http(s), a host, a port in
    1..65535): a bad one is a ConfigError, never a requests error. The first
    request makes sure the server is a node (its ``/status``, fetched first when
    the first request is another path): any other server is :class:`NotANode`,
    one line, rather than a table of someone else's JSON or a ValueError."""

    def __init__(self, url: str, timeout: tuple[float, float] = TIMEOUT):
        import argparse

        from learningchain.cli.argtypes import node_url
        from learningchain.core.errors import ConfigError
        try:
            self.url = node_url(url)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(str(exc)) from None
        self.timeout = timeout
        self.session = requests.Session()
        self.checked = False  # /status answered as a node's

    def get(self, path: str, **params) -> Any:
        if not self.checked and path != "/status":
            self.get("/status")
        try:
            resp = self.session.get(self.url + path, params=params or None, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            exc.node_url = self.url  # type: ignore[attr-defined]
            raise
        try:
            doc = resp.json()
        except ValueError:
            raise NotANode(self.not_a_node(f"its answer to {path} (HTTP {resp.status_code}) is not JSON")) from None
        if resp.status_code >= 400:
            if not (isinstance(doc, dict) and "error" in doc):
                raise NotANode(self.not_a_node(f"it answered {path} with HTTP {resp.status_code} "
                                               f"but no error document"))
            reason = doc.get("reason")
            raise NodeError(f"{self.url}{path}: {doc.get('error')}" + (f" ({reason})" if reason else ""))
        if path == "/status":
            if not self.is_status(doc):
                raise NotANode(self.not_a_node("its /status has no network, genesis and height"))
            self.checked = True
        return doc

    @staticmethod
    def is_status(doc: Any) -> bool:
        """Whether ``doc`` is what a node's ``/status`` answers (docs/api.md)."""
        return (isinstance(doc, dict) and isinstance(doc.get("genesis"), str) and "network" in doc
                and isinstance(doc.get("height"), int) and not isinstance(doc.get("height"), bool))

    def not_a_node(self, why: str) -> str:
        return f"{self.url} is not a LearningChain node ({why}): check the --node URL and port"

    def close(self) -> None:
        self.session.close()


# --- formatting ------------------------------------------------------------------

def short(value: Any, n: int = 16) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= n else text[:n] + "…"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "-"
    return str(value)


def when(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return fmt(ms)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    rows = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k.ljust(width)}  {v if isinstance(v, str) else fmt(v)}" for k, v in items)


def _list(doc: Any, *keys: str) -> list:
    if isinstance(doc, list):
        return doc
    for key in keys:
        if isinstance(doc, dict) and isinstance(doc.get(key), list):
            return doc[key]
    return []


# --- commands ------------------------------------------------------------------

def show_status(c: NodeClient, args) -> str:
    s = c.get("/status")
    if args.json:
        return s
    keys = ("network", "genesis", "height", "tip", "round", "model_digest", "mempool", "peers",
            "address", "pubkey", "mining", "refused", "metrics")
    items = [(k, s.get(k)) for k in keys if k in s]
    items += [(k, v) for k, v in s.items() if k not in keys]
    if isinstance(s.get("peers"), list):
        items = [(k, f"{len(v)}: {', '.join(map(str, v))}" if k == "peers" else v) for k, v in items]
    return f"node {c.url}\n" + pairs(items)


def _block_rows(blocks: list) -> list:
    rows = []
    for b in blocks:
        header = b.get("header", {}) if isinstance(b.get("header"), dict) else {}
        txs = b.get("txs")
        rows.append([str(b.get("height", header.get("height"))), short(b.get("hash"), 16),
                     when(b.get("timestamp", header.get("timestamp"))),
                     str(len(txs) if isinstance(txs, list) else fmt(txs)),
                     short(b.get("miner", header.get("miner")), 12), fmt(b.get("round_closed"))])
    return rows


def show_chain(c: NodeClient, args) -> str:
    start = args.start
    if start is None:
        height = c.get("/status").get("height", 0)
        start = max(0, int(height) - args.limit + 1)
    doc = c.get("/chain", start=start, limit=args.limit)
    if args.json:
        return doc
    blocks = _list(doc, "blocks")
    return (f"height {doc.get('height')}, showing {len(blocks)} block(s) from {start}\n"
            + table(["height", "hash", "time", "txs", "miner", "round closed"], _block_rows(blocks)))


def show_block(c: NodeClient, args) -> str:
    b = c.get(f"/blocks/{args.block}")
    if args.json:
        return b
    header = b.get("header") if isinstance(b.get("header"), dict) else b
    items = [("hash", b.get("hash"))]
    items += [(k, header.get(k)) for k in ("height", "prev_hash", "timestamp", "target", "miner",
                                           "nonce", "merkle_root", "commitment_hash") if k in header]
    items = [(k, f"{v} ({when(v)})" if k == "timestamp" else v) for k, v in items]
    out = pairs(items)
    commitment = b.get("commitment")
    if commitment:
        out += "\n\nround commitment\n" + pairs([(k, _brief(v)) for k, v in commitment.items()])
    txs = b.get("txs") or []
    if txs:
        rows = [[short(t.get("id") if isinstance(t, dict) else t, 16),
                 short(t.get("sender"), 12) if isinstance(t, dict) else "",
                 fmt(t.get("round")) if isinstance(t, dict) else "",
                 fmt(t.get("num_samples")) if isinstance(t, dict) else ""] for t in txs]
        out += f"\n\n{len(txs)} transaction(s)\n" + table(["id", "sender", "round", "samples"], rows)
    return out


def _brief(v: Any) -> str:
    if isinstance(v, list):
        return f"{len(v)}: " + ", ".join(short(x, 12) for x in v)
    if isinstance(v, dict):
        return f"{len(v)}: " + ", ".join(f"{short(k, 12)}={fmt(x)}" for k, x in v.items())
    return fmt(v)


def show_tx(c: NodeClient, args) -> str:
    doc = c.get(f"/txs/{args.txid}")
    if args.json:
        return doc
    tx = doc.get("tx", {})
    items = [("id", tx.get("id", args.txid)), ("status", doc.get("status")), ("block", doc.get("block"))]
    items += [(k, tx.get(k)) for k in ("sender", "round", "base", "num_samples", "timestamp") if k in tx]
    if isinstance(tx.get("weights"), dict):
        items.append(("weights", ", ".join(sorted(tx["weights"]))))
    if "metrics" in tx:
        items.append(("metrics (self-reported)", _brief(tx["metrics"])))
    return pairs(items)


def show_mempool(c: NodeClient, args) -> str:
    doc = c.get("/mempool")
    if args.json:
        return doc
    txs = _list(doc, "txs", "transactions")
    rows = [[short(t.get("id"), 16), short(t.get("sender"), 12), fmt(t.get("round")),
             fmt(t.get("size", t.get("bytes")))] if isinstance(t, dict) else [short(t, 16), "", "", ""]
            for t in txs]
    return f"{len(txs)} transaction(s) waiting\n" + table(["id", "sender", "round", "bytes"], rows)


def show_peers(c: NodeClient, args) -> str:
    doc = c.get("/peers")
    if args.json:
        return doc
    peers = _list(doc, "peers")
    rows = []
    for p in peers:
        if isinstance(p, dict):
            ago = p.get("last_seen_s_ago")
            rows.append([str(p.get("url", "")), fmt(p.get("height")),
                         f"{ago:.1f} s ago" if isinstance(ago, (int, float)) else "never",
                         fmt(p.get("failures")), _bytes(p.get("bytes_sent")), _bytes(p.get("bytes_received")),
                         short(p.get("last_error"), 24) or "-"])
        else:
            rows.append([str(p), "", "", "", "", "", ""])
    return (f"{len(peers)} peer(s)\n"
            + table(["url", "height", "last seen", "failures", "sent", "received", "last error"], rows))


def _bytes(n: Any) -> str:
    """Bytes exchanged, readable: 812 B, 45.3 kB, 12.1 MB."""
    if not isinstance(n, (int, float)):
        return fmt(n)
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def show_model(c: NodeClient, args) -> str:
    doc = c.get("/model")
    if args.json:
        return doc
    items = [("round", doc.get("round")), ("digest", doc.get("digest")),
             ("metrics", doc.get("metrics"))]
    weights = doc.get("weights")
    if isinstance(weights, dict):
        items.append(("arrays", ", ".join(f"{k}{_shape(v)}" for k, v in sorted(weights.items()))))
    return pairs(items)


def _shape(encoded: Any) -> str:
    if isinstance(encoded, dict) and "shape" in encoded:
        return "(" + "x".join(str(d) for d in encoded["shape"]) + ")"
    return ""


def show_round(c: NodeClient, args) -> str:
    if args.round is None:
        doc = c.get("/rounds")
        if args.json:
            return doc
        rounds = _list(doc, "rounds")
        rows = [[fmt(r.get("round")), fmt(r.get("status")), fmt(r.get("closed_at", r.get("height"))),
                 _count(r.get("updates")), _count(r.get("accepted")), _count(r.get("rejected")),
                 _metric(r.get("metrics")), short(r.get("model_digest"), 16)] for r in rounds]
        return table(["round", "status", "closed at", "updates", "accepted", "rejected", "metric",
                      "model digest"], rows)
    r = c.get(f"/rounds/{args.round}")
    if args.json:
        return r
    items = [(k, r.get(k)) for k in ("round", "status", "opened_at", "closed_at", "block",
                                      "model_digest", "metrics") if k in r]
    out = pairs(items)
    rejected = r.get("rejected") or {}
    accepted = set(r.get("accepted") or [])
    updates = r.get("updates") or []
    if updates:
        rows = []
        for u in updates:
            uid = u.get("id") if isinstance(u, dict) else u
            verdict = "accepted" if uid in accepted else (f"rejected: {rejected[uid]}"
                                                         if uid in rejected else "pending")
            rows.append([short(uid, 16), short(u.get("sender"), 12) if isinstance(u, dict) else "",
                         fmt(u.get("height")) if isinstance(u, dict) else "", verdict])
        out += f"\n\n{len(updates)} update(s)\n" + table(["id", "sender", "height", "verdict"], rows)
    return out


def _count(v: Any) -> str:
    if isinstance(v, (list, dict)):
        return str(len(v))
    return fmt(v)


def _metric(m: Any) -> str:
    if not isinstance(m, dict):
        return fmt(m)
    for name in ("accuracy", "rmse"):
        if name in m:
            return f"{name} {m[name]:.4f}"
    return fmt(m)


COMMANDS = {
    "status": (show_status, "height, tip, round, peers and mining of a node"),
    "chain": (show_chain, "the latest blocks of the main chain"),
    "block": (show_block, "one block by hash or height"),
    "tx": (show_tx, "one transaction and where it is"),
    "mempool": (show_mempool, "transactions waiting for a block"),
    "peers": (show_peers, "the node's peers"),
    "model": (show_model, "the current global model"),
    "round": (show_round, "all rounds, or one round's updates and verdicts"),
}


def register(sub) -> None:
    from learningchain.cli.argtypes import node_url
    for name, (func, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--node", type=node_url, default="http://127.0.0.1:5000",
                       help="node URL, http(s)://host[:port] (default http://127.0.0.1:5000)")
        p.add_argument("--json", action="store_true", help="print the node's JSON answer")
        if name == "chain":
            p.add_argument("--start", type=int, help="first height (default: the last --limit blocks)")
            p.add_argument("--limit", type=int, default=20, help="blocks to show (default 20)")
        elif name == "block":
            p.add_argument("block", help="block hash or height")
        elif name == "tx":
            p.add_argument("txid", help="transaction id")
        elif name == "round":
            p.add_argument("round", nargs="?", type=int, help="round number (default: list all)")
        p.set_defaults(func=_runner(func))


def _runner(func):
    def run(args: argparse.Namespace) -> int:
        client = NodeClient(args.node)
        try:
            out = func(client, args)
        finally:
            client.close()
        print(json.dumps(out, indent=1) if args.json else out)
        return 0
    return run
