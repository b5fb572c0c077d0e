"""Proof-of-work search: the ledger only verifies (:meth:`BlockHeader.check_pow`),
searching lives here.

The header puts the 8-byte big-endian nonce last (see :mod:`learningchain.ledger.block`),
so the 181-byte prefix is hashed once and its SHA-256 state copied per nonce.
In CPython the loop is interpreter-bound, not hash-bound (FACTS.md: ~6 M
hashes/s for OpenSSL vs ~2.8 M for this loop), so every attribute look-up is
hoisted out of it and the digest is compared as bytes against the target's
32-byte big-endian form: for equal-length byte strings, lexicographic order
is the order of the big-endian integers.

:class:`Miner` spreads a search over worker processes that stay alive across
blocks. Workers receive only ints and bytes; each searches a disjoint stripe of
the nonce space in chunks of :data:`POOL_CHUNK` nonces and checks a shared job
number between chunks, so a found nonce, a new tip or :meth:`Miner.interrupt`
(called from another thread the moment the node's template goes stale) stops
them all within one chunk (~3 ms). A node mines in a worker process even with
one worker (``in_process=False``), so the search never holds the node's GIL,
and may lower the workers' priority (``nice``): on a machine shared with
training and validation, hashing then takes only the CPU they leave idle.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import signal
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # keep worker start-up light: workers import only this module
    from learningchain.ledger.block import BlockHeader

NONCE_SPACE = 1 << 64
#: nonces per chunk between checks of the stop flag, searching in-process (~25 ms at ~2.8 M H/s).
CHUNK = 1 << 16
#: nonces per chunk in a worker process between looks at the shared job number
#: (~3 ms): how long an interrupt takes to reach a worker.
POOL_CHUNK = 1 << 13
#: how often mine() looks at results and calls should_stop().
POLL_SECONDS = 0.01
_pack_nonce = struct.Struct(">Q").pack


def search(prefix: bytes, target: int, start: int, count: int) -> tuple[int | None, int]:
    """Try nonces ``start .. start+count-1`` (clipped to the 64-bit nonce space)
    after ``prefix``; return ``(nonce, hashes done)`` for the first whose
    SHA-256 is below ``target``, or ``(None, hashes done)``."""
    start = max(0, start)
    stop = min(start + max(0, count), NONCE_SPACE)
    if start >= stop:
        return None, 0
    if target >= 1 << 256:  # every hash is below it
        return start, 1
    if target <= 0:
        target_bytes = bytes(32)  # nothing is below zero; still do the honest work
    else:
        target_bytes = target.to_bytes(32, "big")
    # Unbound methods of the hash type, called on the state: no attribute
    # look-up per nonce (measured ~5 % faster than bound-method calls).
    state = hashlib.sha256(prefix)
    sha_type = type(state)
    copy, update, digest = sha_type.copy, sha_type.update, sha_type.digest
    for nonce_bytes in map(_pack_nonce, range(start, stop)):
        h = copy(state)
        update(h, nonce_bytes)
        if digest(h) < target_bytes:
            nonce = int.from_bytes(nonce_bytes, "big")
            return nonce, nonce - start + 1
    return None, stop - start


@dataclass(frozen=True)
class MineResult:
    nonce: int | None
    hashes: int
    seconds: float

    @property
    def hashrate(self) -> float:
        """Hashes per second over the whole call."""
        return self.hashes / self.seconds if self.seconds > 0 else 0.0


def format_rate(hashrate: float) -> str:
    for unit, scale in (("MH/s", 1e6), ("kH/s", 1e3)):
        if hashrate >= scale:
            return f"{hashrate / scale:.2f} {unit}"
    return f"{hashrate:.0f} H/s"


def _lower_priority(nice: int) -> None:
    """Add ``nice`` to this process's nice value: hashing then yields to the node's
    own threads (training, validation, the API). Not SCHED_IDLE: on a machine that
    is never idle (a loaded test run) an idle-class miner got no CPU at all, and a
    chain whose round timeouts count blocks stopped."""
    try:
        os.nice(nice)
    except OSError:
        pass  # not allowed here: search at normal priority


def _worker_main(index: int, jobs, results, active, progress, nice: int = 0) -> None:
    """Worker process loop. A job is ``(job_id, prefix, target, start, stride)``;
    the worker searches chunks ``start + (k*stride + index)*POOL_CHUNK`` while the
    shared ``active`` job number equals its job id, then reports exactly one
    ``(job_id, index, nonce or -1, hashes)``. ``None`` ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    if nice > 0:
        _lower_priority(nice)
    while True:
        job = jobs.get()
        if job is None:
            return
        job_id, prefix, target, start, stride = job
        done, found = 0, -1
        chunk_start = start + index * POOL_CHUNK
        while active.value == job_id and chunk_start < NONCE_SPACE:
            nonce, hashes = search(prefix, target, chunk_start, POOL_CHUNK)
            done += hashes
            progress[index] = done
            if nonce is not None:
                found = nonce
                break
            chunk_start += stride * POOL_CHUNK
        results.put((job_id, index, found, done))


class Miner:
    """Searches nonces with ``workers`` processes kept alive across blocks
    (``workers=1`` searches in-process unless ``in_process=False``: cheap enough
    to call thousands of times at simulator difficulty). ``nice``: added to the
    worker processes' nice value. Use as a context manager or call :meth:`close`."""

    def __init__(self, workers: int | None = None, context: str = "spawn", in_process: bool | None = None,
                 nice: int = 0):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.in_process = self.workers == 1 if in_process is None else bool(in_process and self.workers == 1)
        self.nice = max(0, int(nice))
        self._context_name = context
        self._procs: list = []
        self._job_id = 0
        self._interrupted = False  # in-process search: checked between chunks

    # --- worker pool ----------------------------------------------------------
    def _start(self) -> None:
        # 'spawn' by default: forking a process that runs threads (an HTTP client,
        # a node) can deadlock the child; the start-up cost is paid once per Miner.
        ctx = mp.get_context(self._context_name)
        self._active = ctx.RawValue("Q", 0)
        self._progress = ctx.RawArray("Q", self.workers)
        self._results = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(self.workers)]
        for i in range(self.workers):
            p = ctx.Process(target=_worker_main, name=f"miner-worker-{i}", daemon=True,
                            args=(i, self._jobs[i], self._results, self._active, self._progress, self.nice))
            p.start()
            self._procs.append(p)

    def close(self) -> None:
        """Stop and reap the worker processes (idempotent)."""
        if not self._procs:
            return
        self._active.value = 0
        for q in self._jobs:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for p in self._procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(1.0)
        for q in (*self._jobs, self._results):
            q.close()
            q.cancel_join_thread()
        self._procs = []

    def __enter__(self) -> "Miner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- searching ------------------------------------------------------------
    def interrupt(self) -> None:
        """Stop the search running now (from any thread): its :meth:`mine` returns
        without a nonce within one chunk. A search started after the call is not
        affected (the caller's ``should_stop`` covers that race). Costs one write
        to shared memory."""
        self._interrupted = True
        if self._procs:
            self._active.value = 0

    def mine(self, prefix: bytes, target: int, should_stop: Callable[[], bool] | None = None,
             start_nonce: int = 0,
             on_progress: Callable[[int, float], None] | None = None,
             progress_seconds: float = 10.0) -> MineResult:
        """Search from ``start_nonce`` until a nonce is found, the nonce space is
        exhausted, or ``should_stop()`` (called about every 10 ms) returns true.
        ``on_progress(hashes, seconds)`` is called about every ``progress_seconds``."""
        t0 = time.perf_counter()
        self._interrupted = False
        if self.in_process:
            nonce, hashes = self._mine_here(prefix, target, should_stop, start_nonce, on_progress,
                                            progress_seconds, t0)
        else:
            nonce, hashes = self._mine_pool(prefix, target, should_stop, start_nonce, on_progress,
                                            progress_seconds, t0)
        return MineResult(nonce, hashes, time.perf_counter() - t0)

    def _mine_here(self, prefix, target, should_stop, start, on_progress, every, t0):
        done = 0
        next_report = t0 + every
        while start < NONCE_SPACE:
            nonce, hashes = search(prefix, target, start, CHUNK)
            done += hashes
            if nonce is not None:
                return nonce, done
            start += CHUNK
            if (should_stop is not None and should_stop()) or self._interrupted:
                break
            if on_progress is not None and time.perf_counter() >= next_report:
                on_progress(done, time.perf_counter() - t0)
                next_report += every
        return None, done

    def _mine_pool(self, prefix, target, should_stop, start, on_progress, every, t0):
        if not self._procs:
            self._start()
        self._job_id += 1
        job_id = self._job_id
        for i in range(self.workers):
            self._progress[i] = 0
        self._active.value = job_id
        for q in self._jobs:
            q.put((job_id, bytes(prefix), int(target), int(start), self.workers))
        found, done, reported = None, 0, 0
        next_report = t0 + every
        try:
            while reported < self.workers:
                try:
                    rid, _index, nonce, hashes = self._results.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    self._check_alive()
                    if should_stop is not None and self._active.value == job_id and should_stop():
                        self._active.value = 0
                    if on_progress is not None and time.perf_counter() >= next_report:
                        on_progress(sum(self._progress), time.perf_counter() - t0)
                        next_report += every
                    continue
                if rid != job_id:  # a straggler from an interrupted earlier job
                    continue
                reported += 1
                done += hashes
                if nonce >= 0 and found is None:
                    found = nonce
                    self._active.value = 0  # stop the others
        except BaseException:
            # Ctrl-C or a dead worker: the pool's state is unknown, so drop it.
            self.close()
            raise
        return found, done

    def _check_alive(self) -> None:
        dead = [p.name for p in self._procs if not p.is_alive()]
        if dead:
            raise RuntimeError(f"miner worker(s) {', '.join(dead)} died; restart the miner")


def mine_header(header: "BlockHeader", miner: Miner | None = None,
                should_stop: Callable[[], bool] | None = None) -> "BlockHeader | None":
    """``header`` with a nonce that satisfies its target, searching from its
    current nonce, or None if stopped first (or the nonce space ran out)."""
    own = miner is None
    miner = miner or Miner(workers=1)
    try:
        result = miner.mine(header.prefix(), header.target, should_stop, start_nonce=header.nonce)
    finally:
        if own:
            miner.close()
    return None if result.nonce is None else header.with_nonce(result.nonce)
