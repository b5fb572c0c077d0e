"""Read-only commands against a running node over its HTTP API:
``status chain block tx mempool peers model round``.

Each prints aligned plain-text tables (no extra dependencies) or, with
``--json``, the node's JSON answer unchanged for scripts. An unreachable node
or an error answer becomes one line and exit status 1 (see :mod:`.cli`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any, Iterable, Sequence

import requests

from learningchain.core.errors import LearningChainError
from learningchain.core.units import age, byte_size, duration, hash_rate, timestamp

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

#: characters of an id (hash, tx id, key) in a table: enough for the node to
#: accept it as a unique prefix wherever a full id goes
ID_CHARS = 16


def short(value: Any, n: int = ID_CHARS) -> str:
    """The first ``n`` characters of an id, copyable as they are (no ellipsis)."""
    return "-" if value is None or value == "" else str(value)[:n]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "-"
    return str(value)


def metrics(m: Any) -> str:
    """A model's metrics on one line: ``accuracy 0.9778  f1 0.9778 ...``."""
    if not isinstance(m, dict):
        return fmt(m)
    return "  ".join(f"{k} {_num(v)}" for k, v in m.items()) or "-"


def _num(v: Any) -> str:
    if isinstance(v, str):  # self-reported metrics travel as decimal strings
        try:
            return f"{float(v):.4f}"
        except ValueError:
            return v
    return fmt(v)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """Columns separated by two spaces, with a rule under the header; the
    columns numbered in ``right`` (numbers) are right-aligned."""
    rows = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    right = set(right)

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k.ljust(width)}  {v if isinstance(v, str) else fmt(v)}".rstrip() for k, v in items)


def _list(doc: Any, *keys: str) -> list:
    if isinstance(doc, list):
        return doc
    for key in keys:
        if isinstance(doc, dict) and isinstance(doc.get(key), list):
            return doc[key]
    return []


def tx_id(tx: Any) -> str | None:
    """A transaction's id from its document (docs/protocol.md section 3: SHA-256
    of the canonical JSON of the body, the tx without its signature): blocks
    carry their txs without the id."""
    if not isinstance(tx, dict):
        return tx if isinstance(tx, str) else None
    if isinstance(tx.get("id"), str):
        return tx["id"]
    body = {k: v for k, v in tx.items() if k != "signature"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- commands ------------------------------------------------------------------

def show_status(c: NodeClient, args) -> str:
    s = c.get("/status")
    if args.json:
        return s
    if getattr(args, "brief", False):
        return brief_status(c.url, s)
    out = [f"node {c.url}", status_pairs(s)]
    timings = s.get("timings")
    if isinstance(timings, dict) and timings:
        out.append("\ntime spent since start\n" + timings_table(timings))
    traffic = s.get("traffic")
    if isinstance(traffic, dict):
        out.append("\n" + traffic_summary(traffic) + "\n" + traffic_table(traffic))
    return "\n".join(out)


#: the /status fields shown first, in this order, with their label; then the rest
STATUS_FIELDS = (("network", "network"), ("genesis", "genesis"), ("height", "height"), ("tip", "tip"),
                 ("round", "round"), ("model_digest", "model digest"), ("metrics", "model metrics"),
                 ("mempool", "mempool"), ("peers", "peers"), ("address", "address"), ("pubkey", "pubkey"),
                 ("mining", "mining"), ("refused", "refused"), ("work", "chain work"))
#: shown in their own tables below the pairs
STATUS_TABLES = ("timings", "traffic")


def status_pairs(s: dict) -> str:
    labels = dict(STATUS_FIELDS)
    items = []
    for key in [k for k, _ in STATUS_FIELDS if k in s] + [k for k in s if k not in labels]:
        if key in STATUS_TABLES or key in ("miner", "metrics_round"):
            continue
        value = s[key]
        if key == "mining":
            value = mining_line(s)
        elif key == "metrics":
            value = metrics(value) + (f" (round {s['metrics_round']})" if s.get("metrics_round") is not None else "")
        elif key == "mempool":
            value = f"{value} tx" if isinstance(value, int) else fmt(value)
        elif key == "peers" and isinstance(value, list):
            value = f"{len(value)}: {', '.join(map(str, value))}"
        elif key == "refused":
            value = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) and value else "none"
        elif key == "energy" and isinstance(value, dict):
            value = energy_line(value)
        elif isinstance(value, dict):
            value = fmt({k: v for k, v in value.items()})
        items.append((labels.get(key, key.replace("_", " ")), value))
    return pairs(items)


def mining_line(s: dict) -> str:
    m = s.get("miner")
    if not s.get("mining"):
        return "no"
    if not isinstance(m, dict):
        return "yes"
    workers = m.get("workers")
    parts = [f"{workers} worker{'s' if workers != 1 else ''}" if workers is not None else None,
             f"{m['blocks_found']} blocks found" if "blocks_found" in m else None,
             f"{hash_rate(m.get('hashrate'))}" if "hashrate" in m else None,
             f"recent {hash_rate(m.get('hashrate_recent'))}" if "hashrate_recent" in m else None,
             f"{m['hashes']:,} hashes in {duration(m.get('search_s'))}" if "hashes" in m else None]
    return "yes: " + ", ".join(p for p in parts if p)


def energy_line(e: dict) -> str:
    def j(v):
        return f"{v:.2f} J" if isinstance(v, (int, float)) else fmt(v)
    text = (f"{j(e.get('total_j'))} (training {j(e.get('train_j'))}, communication {j(e.get('comm_j'))}, "
            f"proof of work {j(e.get('pow_j'))})")
    last = e.get("last_round_energy")
    if isinstance(last, dict):
        text += f"; round {e.get('last_round')}: {j(last.get('total_j'))}"
    return text + ("" if e.get("declared") else " (default profile)")


def timings_table(t: dict) -> str:
    names = sorted({k[:-2] for k in t if k.endswith("_s")} | {k[:-6] for k in t if k.endswith("_count")})
    rows = []
    for name in names:
        total, count = t.get(f"{name}_s"), t.get(f"{name}_count")
        mean = total / count if isinstance(total, (int, float)) and isinstance(count, int) and count else None
        rows.append([name.replace("_", " "), duration(total), fmt(count), duration(mean) if mean is not None else "-"])
    return table(["task", "total", "times", "mean"], rows, right=(1, 2, 3))


def traffic_summary(t: dict) -> str:
    text = (f"traffic: {byte_size(t.get('sent'))} sent, {byte_size(t.get('received'))} received, "
            f"{fmt(t.get('dropped'))} dropped, {fmt(t.get('queued'))} queued")
    refused = t.get("refused_peers")
    if isinstance(refused, dict) and refused:
        text += "; refused peers: " + ", ".join(f"{k} {fmt(v)}" for k, v in refused.items())
    return text


def traffic_table(t: dict) -> str:
    by_type = t.get("by_type")
    rows = [[name, fmt(v.get("messages")), byte_size(v.get("sent")), byte_size(v.get("received"))]
            for name, v in (by_type.items() if isinstance(by_type, dict) else ()) if isinstance(v, dict)]
    return table(["message type", "messages", "sent", "received"], rows, right=(1, 2, 3))


def brief_status(url: str, s: dict) -> str:
    """One line of at most about 60 characters per node (the tmux status pane,
    a third of a terminal wide): where, height, round, model metric, mempool,
    peers and hash rate, in fixed-width columns so the lines of several nodes align."""
    host = url.split("://")[-1]
    host = host[len("127.0.0.1"):] if host.startswith("127.0.0.1:") else host
    m = s.get("metrics") if isinstance(s.get("metrics"), dict) else {}
    metric = next(((k, m[k]) for k in ("accuracy", "rmse") if isinstance(m.get(k), (int, float))), None)
    miner = s.get("miner") if isinstance(s.get("miner"), dict) else {}
    peers = s.get("peers")
    rate = hash_rate(miner.get("hashrate_recent", miner.get("hashrate"))) if s.get("mining") else "not mining"
    return (f"{host:<6} h {fmt(s.get('height')):>5}  r {fmt(s.get('round')):>4}  "
            f"{f'{metric[0][:3]} {metric[1]:.4f}' if metric else 'no metric':<10}  mp {fmt(s.get('mempool')):>2}  "
            f"peers {len(peers) if isinstance(peers, list) else fmt(peers)}  {rate}")


def _block_rows(blocks: list) -> list:
    rows = []
    for b in blocks:
        header = b.get("header", {}) if isinstance(b.get("header"), dict) else {}
        txs = b.get("txs")
        ts = b.get("timestamp", header.get("timestamp"))
        rows.append([fmt(b.get("height", header.get("height"))), short(b.get("hash")), timestamp(ts), age(ts),
                     str(len(txs) if isinstance(txs, list) else fmt(txs)),
                     short(b.get("miner", header.get("miner"))), fmt(b.get("round_closed"))])
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
            + table(["height", "hash", "time", "age", "txs", "miner", "round closed"], _block_rows(blocks),
                    right=(0, 4, 6)))


def show_block(c: NodeClient, args) -> str:
    b = c.get(f"/blocks/{args.block}")
    if args.json:
        return b
    header = b.get("header") if isinstance(b.get("header"), dict) else b
    items = [("hash", b.get("hash"))]
    items += [(k, header.get(k)) for k in ("height", "prev_hash", "timestamp", "target", "miner",
                                           "nonce", "merkle_root", "commitment_hash") if k in header]
    items = [(k, f"{v} ({timestamp(v)}, {age(v)})" if k == "timestamp" else v) for k, v in items]
    out = pairs(items)
    commitment = b.get("commitment")
    if commitment:
        out += "\n\nround commitment\n" + pairs([(k, _brief(v)) for k, v in commitment.items()])
    txs = b.get("txs") or []
    if txs:
        rows = [[short(tx_id(t)), *([short(t.get("sender")), t.get("type", "-"), fmt(t.get("round")),
                                     fmt(t.get("num_samples"))] if isinstance(t, dict) else ["-"] * 4)]
                for t in txs]
        out += (f"\n\n{len(txs)} transaction(s)\n"
                + table(["id", "sender", "type", "round", "samples"], rows, right=(3, 4)))
    return out


def _brief(v: Any) -> str:
    if isinstance(v, list):
        return f"{len(v)}: " + ", ".join(short(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return f"{len(v)}: " + ", ".join(f"{short(k)} {fmt(x)}" for k, x in v.items()) if v else "none"
    return fmt(v)


def show_tx(c: NodeClient, args) -> str:
    doc = c.get(f"/txs/{args.txid}")
    if args.json:
        return doc
    tx = doc.get("tx", {})
    items = [("id", doc.get("id") or tx_id(tx) or args.txid), ("status", doc.get("status")), ("block", doc.get("block"))]
    if "height" in doc:
        items.append(("height", doc.get("height")))
    items += [(k, tx.get(k)) for k in ("type", "sender", "round", "base", "num_samples") if k in tx]
    if "timestamp" in tx:
        items.append(("timestamp", f"{tx['timestamp']} ({timestamp(tx['timestamp'])}, {age(tx['timestamp'])})"))
    if isinstance(tx.get("weights"), dict):
        items.append(("weights", ", ".join(f"{k}{_shape(v)}" for k, v in sorted(tx["weights"].items()))))
    if "metrics" in tx:
        items.append(("metrics (self-reported)", metrics(tx["metrics"])))
    return pairs(items)


def show_mempool(c: NodeClient, args) -> str:
    doc = c.get("/mempool")
    if args.json:
        return doc
    txs = _list(doc, "txs", "transactions")
    rows = [[short(t.get("id")), short(t.get("sender")), fmt(t.get("round")), fmt(t.get("num_samples")),
             byte_size(t.get("size", t.get("bytes")))] if isinstance(t, dict) else [short(t), "-", "-", "-", "-"]
            for t in txs]
    total = f", {byte_size(doc['bytes'])}" if isinstance(doc, dict) and "bytes" in doc else ""
    return (f"{len(txs)} transaction(s) waiting{total}\n"
            + table(["id", "sender", "round", "samples", "size"], rows, right=(2, 3, 4)))


def show_peers(c: NodeClient, args) -> str:
    doc = c.get("/peers")
    if args.json:
        return doc
    peers = _list(doc, "peers")
    rows = []
    for p in peers:
        if isinstance(p, dict):
            ago = p.get("last_seen_s_ago")
            backoff = p.get("backoff_seconds")
            rows.append([str(p.get("url", "")), fmt(p.get("height")),
                         f"{ago:.1f} s ago" if isinstance(ago, (int, float)) and ago < 60
                         else f"{duration(ago)} ago" if isinstance(ago, (int, float)) else "never",
                         fmt(p.get("failures")), duration(backoff) if backoff else "-",
                         byte_size(p.get("bytes_sent")), byte_size(p.get("bytes_received")),
                         (p.get("last_error") or "-")[:40]])
        else:
            rows.append([str(p), "-", "-", "-", "-", "-", "-", "-"])
    out = (f"{len(peers)} peer(s)\n" + table(["url", "height", "last seen", "failures", "backoff", "sent",
                                              "received", "last error"], rows, right=(1, 2, 3, 4, 5, 6)))
    traffic = doc.get("traffic") if isinstance(doc, dict) else None
    if isinstance(traffic, dict):
        out += "\n\n" + traffic_summary(traffic) + "\n" + traffic_table(traffic)
    return out


def show_model(c: NodeClient, args) -> str:
    if getattr(args, "export", None):  # numpy only on this path (cli/export.py)
        from learningchain.cli.export import check_target, export_model
        check_target(args.export, args.force)  # a bad path answers before any request
        return export_model(c.get("/model"), args.export, args.force)
    if args.force:
        from learningchain.core.errors import ConfigError
        raise ConfigError("--force applies to --export FILE only")
    doc = c.get("/model")
    if args.json:
        return doc
    items = [("round", doc.get("round")), ("digest", doc.get("digest")), ("metrics", metrics(doc.get("metrics")))]
    weights = doc.get("weights")
    if isinstance(weights, dict):
        size = sum(_count_params(v) for v in weights.values())
        items.append(("arrays", ", ".join(f"{k}{_shape(v)}" for k, v in sorted(weights.items()))))
        items.append(("parameters", f"{size:,} ({byte_size(4 * size)} as float32)"))
    return pairs(items)


def _shape(encoded: Any) -> str:
    if isinstance(encoded, dict) and "shape" in encoded:
        return "(" + "x".join(str(d) for d in encoded["shape"]) + ")"
    return ""


def _count_params(encoded: Any) -> int:
    shape = encoded.get("shape") if isinstance(encoded, dict) else None
    if not isinstance(shape, list):
        return 0
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else 0
    return n


def show_round(c: NodeClient, args) -> str:
    if args.round is None:
        doc = c.get("/rounds")
        if args.json:
            return doc
        rounds = _list(doc, "rounds")
        rows = [[fmt(r.get("round")), fmt(r.get("status")), fmt(r.get("closed_at", r.get("height"))),
                 _count(r.get("updates")), _count(r.get("accepted")), _count(r.get("rejected")),
                 _metric(r.get("metrics")), short(r.get("model_digest"))] for r in rounds]
        return table(["round", "status", "closed at", "updates", "accepted", "rejected", "metric",
                      "model digest"], rows, right=(0, 2, 3, 4, 5))
    r = c.get(f"/rounds/{args.round}")
    if args.json:
        return r
    items = [(k.replace("_", " "), r.get(k)) for k in ("round", "status", "opened_at", "closed_at", "block", "rule",
                                                       "model_digest") if k in r]
    if "metrics" in r:
        items.append(("metrics", metrics(r["metrics"])))
    if isinstance(r.get("energy"), dict):
        items.append(("energy", energy_line(r["energy"]).replace(" (default profile)", "")))
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
            rows.append([short(uid), *([short(u.get("sender")), fmt(u.get("height")), fmt(u.get("num_samples")),
                                        "skip" if u.get("skip") else fmt(u.get("type"))]
                                       if isinstance(u, dict) else ["-"] * 4), verdict])
        out += (f"\n\n{len(updates)} update(s)\n"
                + table(["id", "sender", "height", "samples", "type", "verdict"], rows, right=(2, 3)))
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
            return f"{name} {_num(m[name])}"
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
        if name == "status":
            p.add_argument("--brief", action="store_true",
                           help="one line: height (h), round (r), model metric, mempool (mp), peers, hash rate")
        if name == "chain":
            p.add_argument("--start", type=int, help="first height (default: the last --limit blocks)")
            p.add_argument("--limit", type=int, default=20, help="blocks to show (default 20)")
        elif name == "block":
            p.add_argument("block", help="block hash or height")
        elif name == "tx":
            p.add_argument("txid", help="transaction id")
        elif name == "model":
            p.add_argument("--export", metavar="FILE",
                           help="write the global model to FILE.npz (each named array as float32, plus "
                                "__round__ and __digest__) or FILE.pt (a PyTorch checkpoint: state_dict, round, "
                                "digest); the digest is checked against the node's first")
            p.add_argument("--force", action="store_true", help="with --export: overwrite FILE")
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
        print(json.dumps(out, indent=1) if args.json and not isinstance(out, str) else out)
        return 0
    return run
