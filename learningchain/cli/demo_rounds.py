"""Following a running demo network's rounds: a table row per closed round
(``/rounds/<r>`` of node 0), the results' round entries with their traffic,
timings, sizes and energy, the check that every node derived the same model,
and the baselines the results compare against. :mod:`learningchain.cli.demo`
launches the network and runs these; ``bench/round.py`` times a round with them.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from learningchain.cli.processes import Network, NodeDied, get, wait_for
from learningchain.core.errors import LearningChainError


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / max(1, total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def closed_round(url: str, r: int, wait: int = 0) -> dict | None:
    """Round ``r`` if it is closed and measured at ``url``, else None; ``wait``:
    seconds the node may hold the answer until it is (a long-poll)."""
    doc = get(url, f"/rounds/{r}?wait={wait}" if wait else f"/rounds/{r}", timeout=3.0 + wait)
    if doc and doc.get("status") == "closed" and doc.get("metrics"):
        return doc
    return None


def counters(net: Network, last: dict[str, dict]) -> tuple[int, dict[str, float]]:
    """Bytes sent by all nodes and their summed work timings (``/status``). A node
    that does not answer in time (a loaded machine) counts with its last answer,
    kept in ``last`` by node name: its counters only grow, and a round's traffic
    read as 0 or negative was a missed /status, not a quiet network."""
    sent, work = 0, {}
    for n in net.nodes:
        s = get(n.url, "/status", timeout=10)
        if s:
            last[n.name] = s
        s = last.get(n.name) or {}
        sent += int((s.get("traffic") or {}).get("sent", 0))
        for key, value in (s.get("timings") or {}).items():
            if key.endswith("_s"):
                work[key[:-2]] = work.get(key[:-2], 0.0) + float(value)
    return sent, work


def sa_columns(doc: dict) -> str:
    """The secure-aggregation part of a round's row: the heights its phases opened
    at, its setups / inputs / unmasks, and counted / dropped / disqualified."""
    sa = doc.get("secure_aggregation") or {}
    ph = sa.get("phase_heights") or {}
    heights = "/".join(str(ph.get(k, "-")) for k in ("setup", "input", "unmask"))
    sets = f"{len(sa.get('counted', []))}/{len(sa.get('dropped', []))}/{len(sa.get('disqualified', []))}"
    failed = f"  failed: {sa['failed']}" if sa.get("failed") else ""
    return f"  {heights:>14}  {sa.get('setups', 0):>2}/{sa.get('inputs', 0):>2}/{sa.get('unmasks', 0):>2}  {sets:>8}{failed}"


def follow_rounds(net: Network, rounds: int, attacker_keys: set, timeout: float, tty: bool,
                  secure: bool = False) -> list[dict]:
    """Poll node 0 until round ``rounds`` is closed; a row per closed round.

    Each entry's ``timing`` is the round's wall time (``round``) plus the
    seconds the nodes spent per phase, summed over nodes (their ``/status``
    timings, as the simulator sums its participants); ``traffic_bytes`` is what
    all nodes sent meanwhile (gossip, sync, API answers). The nodes' counters
    start at zero, so round 1 counts from their start (node 0 may train it
    before the last node is up). ``bytes`` and ``energy`` come later
    (:func:`complete_entries`)."""
    from learningchain.sim.results import round_entry
    hub = net.nodes[0]
    entries, r, t_prev, t0 = [], 1, time.monotonic(), time.monotonic()
    sent_prev, work_prev, last_status = 0, {}, {}
    print(f"{'round':>5}  {'height':>6}  {'accepted':>8}  {'rejected':>8}  {'metric':>16}  {'time':>6}"
          + (f"  {'phases at S/I/U':>14}  {'setup/in/unm':>8}  {'cnt/drp/dq':>8}" if secure else ""))
    deadline = t0 + timeout
    while r <= rounds:
        net.check_alive()
        asked = time.monotonic()
        doc = closed_round(hub.url, r, wait=1)  # the node answers when round r closes
        if doc is None:
            if tty:
                status = get(hub.url, "/tip") or {}
                print(f"\r{progress_bar(r - 1, rounds)} round {r}/{rounds}  height "
                      f"{status.get('height', '?')}  {time.monotonic() - t0:5.1f} s", end="", flush=True)
            if time.monotonic() > deadline:
                raise LearningChainError(f"round {r} did not close within {timeout:.0f} s; see the "
                                         f"logs in {net.out}")
            if time.monotonic() - asked < 0.1:  # answered at once (its long-polls are taken): do not spin
                time.sleep(0.2)
            continue
        now, (sent, work) = time.monotonic(), counters(net, last_status)
        commitment = {"accepted": doc.get("accepted", []), "rejected": doc.get("rejected", {})}
        bad_ids = [u["id"] for u in doc.get("updates", []) if u.get("sender") in attacker_keys]
        metrics = {k: float(v) for k, v in doc["metrics"].items()}
        timing = {"round": now - t_prev, **{k: max(0.0, v - work_prev.get(k, 0.0)) for k, v in work.items()}}
        entry = round_entry(r, doc.get("closed_at") or doc.get("height") or 0, metrics, commitment,
                            bad_ids, timing=timing)
        entry.update(traffic_bytes=sent - sent_prev, model_digest=doc.get("model_digest"),
                     update_ids=[u["id"] for u in doc.get("updates", [])])
        if isinstance(doc.get("selected"), list):  # only under a selection policy
            entry.update(selected=len(doc["selected"]),
                         attackers_selected=len(set(doc["selected"]) & attacker_keys))
        entries.append(entry)
        name = "accuracy" if "accuracy" in metrics else "rmse"
        if tty:
            print("\r" + " " * 79 + "\r", end="")
        print(f"{r:>5}  {entry['height']:>6}  {len(entry['accepted']):>8}  {len(entry['rejected']):>8}"
              f"  {name + ' ' + format(metrics[name], '.4f'):>16}  {now - t_prev:5.1f}s"
              + (sa_columns(doc) if secure else ""), flush=True)
        if secure:
            entry["secure_aggregation"] = doc.get("secure_aggregation")
        r, t_prev, sent_prev, work_prev = r + 1, now, sent, work
    return entries


def complete_entries(net: Network, entries: list[dict]) -> None:
    """Fill in what the simulator's entries hold, from the running nodes:
    ``bytes`` (the round's update transactions on chain, canonical size, as
    ``tx.size``), ``skipped``, ``bytes_per_update`` / ``payload_per_update``
    (non-skip updates) and ``energy`` (:func:`learningchain.learning.energy.round_energy`'s
    shape: every node's own estimate from ``GET /rounds/<r>``, summed). Called
    once the last round closed, so earlier rounds' energy no longer grows."""
    from learningchain.learning.compression import payload_bytes
    from learningchain.core.encoding import canonical_json
    from learningchain.ledger.tx import SKIP_TYPE
    hub = net.nodes[0].url
    for entry in entries:
        net.check_alive()
        txs = [(get(hub, f"/txs/{i}") or {}).get("tx") for i in entry.pop("update_ids")]
        txs = [t for t in txs if isinstance(t, dict)]
        sa_txs = [t for t in txs if str(t.get("type", "")).startswith("sa-")]
        if sa_txs:  # secure aggregation: the round's bytes are its setups, inputs and unmasks, per input
            inputs = [t for t in sa_txs if t.get("type") == "sa-input"]
            total = sum(len(canonical_json(t)) for t in sa_txs)
            entry.update(bytes=total, skipped=0, bytes_per_update=total / max(1, len(inputs)),
                         payload_per_update=(sum(len(canonical_json(t["input"])) for t in inputs) / len(inputs)
                                             if inputs else 0.0))
        else:
            updates = [t for t in txs if t.get("type") != SKIP_TYPE]
            entry.update(bytes=sum(len(canonical_json(t)) for t in txs), skipped=len(txs) - len(updates),
                         bytes_per_update=(sum(len(canonical_json(t)) for t in updates) / len(updates)
                                           if updates else 0.0),
                         payload_per_update=(sum(payload_bytes(t["weights"]) for t in updates) / len(updates)
                                             if updates else 0.0))
        per_node = {n.name: (get(n.url, f"/rounds/{entry['round']}") or {}).get("energy") or {}
                    for n in net.nodes}
        parts = {k: sum(float(e.get(k, 0.0)) for e in per_node.values()) for k in ("train_j", "comm_j", "pow_j")}
        entry["energy"] = {"total_j": sum(parts.values()), **parts,
                           "per_node": {name: float(e.get("total_j", 0.0)) for name, e in per_node.items()}}


def check_agreement(net: Network, r: int, timeout: float = 20.0) -> tuple[str, str]:
    """Every node's model digest for round r (equal, or raise); and the tips.
    A node that dies meanwhile is :class:`NodeDied`, not a disagreement."""
    def digests():
        ds = [(closed_round(n.url, r) or {}).get("model_digest") for n in net.nodes]
        return ds if None not in ds and len(set(ds)) == 1 else None
    try:
        digest = wait_for(digests, timeout, f"all nodes to agree on round {r}", net)[0]
    except NodeDied:
        raise
    except LearningChainError:
        seen = [(n.name, (closed_round(n.url, r) or {}).get("model_digest")) for n in net.nodes]
        raise LearningChainError(f"nodes disagree on the model of round {r}: "
                                 + ", ".join(f"{k}={str(v)[:12]}" for k, v in seen)) from None
    tips = {(s or {}).get("tip") for s in (get(n.url, "/status") for n in net.nodes)}
    return digest, ("same tip on every node" if len(tips) == 1 else
                    f"{len(tips)} different tips (blocks in flight), same round-{r} model")


def local_baselines(spec, part_dir: Path, n: int, rounds: int) -> tuple[dict, dict]:
    """G0 metrics and the centralized / local-only baselines on the same files."""
    from learningchain.learning import baselines
    from learningchain.learning.data import Dataset, load_meta, load_partition
    from learningchain.learning.models import build_model
    if (part_dir / "meta.json").is_file():  # partitions written by node.py data
        parts = [load_partition(part_dir / f"node{i}.npz") for i in range(n)]
        X_te, y_te = load_partition(part_dir / "test.npz")
        meta = load_meta(part_dir)
        ds = Dataset(meta.get("dataset", "?"), np.concatenate([p[0] for p in parts]),
                     np.concatenate([p[1] for p in parts]), X_te, y_te, meta.get("task", spec.task),
                     int(meta.get("n_classes", 0)))
    else:  # a user's directory (demo --data DIR)
        from learningchain.learning.data import load_data_dir
        user = load_data_dir(part_dir, spec.task)
        parts, ds = list(user.partitions), user.dataset()
        X_te, y_te = ds.X_test, ds.y_test
    model = build_model(spec)
    initial = model.evaluate(model.initial_weights(), X_te, y_te)
    epochs = rounds * spec.epochs
    return initial, {"centralized": baselines.centralized(spec, ds, epochs),
                     "local_only": baselines.local_only(spec, parts, (X_te, y_te), epochs)}


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (what a
    reader of the explorer can use; an absolute path names the machine's layout)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class BackgroundBaselines(threading.Thread):
    """:func:`local_baselines` in a low-priority thread started with the network
    (off the rounds' path: the nodes keep the CPU first), then each node's
    ``baselines.json`` (:mod:`learningchain.node.baselines_file`) so its explorer
    draws them: G0, the centralized baseline, that node's local-only one and the
    nodes' mean. :meth:`result` waits for it (results.json uses the same figures)."""

    def __init__(self, spec, part_dir: Path, rounds: int, node_dirs: list[Path]):
        super().__init__(name="baselines", daemon=True)
        self.spec, self.part_dir, self.rounds, self.node_dirs = spec, part_dir, rounds, node_dirs
        self._result: tuple[dict, dict] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        from learningchain.node.local_baseline import lower_thread_priority
        lower_thread_priority()
        try:
            self._result = local_baselines(self.spec, self.part_dir, len(self.node_dirs), self.rounds)
            self._write(*self._result)
        except Exception as exc:  # raised by result(), where the demo reports errors
            self._error = exc

    def _write(self, initial: dict, base: dict) -> None:
        from learningchain.learning.data import load_partition
        from learningchain.node.baselines_file import dataset_digest, write_baselines
        from learningchain.learning.data import dir_files
        digest = dataset_digest(*load_partition(dir_files(self.part_dir)[1]))
        local = base["local_only"]
        mean = {k: v for k, v in local.items() if k != "per_node"}
        where = shown_path(self.part_dir)
        for i, d in enumerate(self.node_dirs):
            write_baselines(d, {
                "source": f"node.py demo: the {len(self.node_dirs)} nodes' partitions in {where}, "
                          f"{self.rounds} rounds x {self.spec.epochs} epochs; evaluated on its test.npz",
                "rounds": self.rounds, "epochs": self.rounds * self.spec.epochs, "test_digest": digest,
                "g0": initial, "centralized": base["centralized"], "local_only": local["per_node"][i],
                "local_only_mean": mean})

    def result(self) -> tuple[dict, dict]:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def chain_stats(net: Network, rounds: int, page: int = 500) -> dict:
    """What the chain itself says about a finished run, from node 0: the median
    round (close to close of the closing blocks' header timestamps, rounds 2..R:
    round 1 also waits for the nodes to start), the mean block interval, and the
    stale blocks: blocks the miners found (their ``/status`` ``blocks_found``)
    that are not on the main chain (every block but genesis was mined by the
    network's own miners)."""
    import statistics
    hub = net.nodes[0].url
    status = get(hub, "/status") or {}
    height = int(status.get("height", 0))
    stamps: dict[int, int] = {}
    for start in range(1, height + 1, page):
        for b in (get(hub, f"/chain?start={start}&limit={page}") or {}).get("blocks", []):
            stamps[b["height"]] = b["timestamp"]
    closes = [stamps.get((get(hub, f"/rounds/{r}") or {}).get("closed_at")) for r in range(1, rounds + 1)]
    closes = [c for c in closes if c is not None]
    gaps = [(b - a) / 1000 for a, b in zip(closes, closes[1:])]
    found = sum(int(((get(n.url, "/status") or {}).get("miner") or {}).get("blocks_found", 0)) for n in net.nodes)
    heights = sorted(stamps)
    interval = ((stamps[heights[-1]] - stamps[heights[0]]) / (heights[-1] - heights[0])
                if len(heights) > 1 else None)
    stale = max(0, found - height)
    return {"median_round_s": round(statistics.median(gaps), 4) if gaps else None,
            "mean_block_ms": round(interval, 1) if interval is not None else None,
            "height": height, "blocks_found": found, "stale_blocks": stale,
            "stale_rate": round(stale / found, 4) if found else None}
