"""The Python API, for notebooks and scripts: ``import learningchain as lc``.

* :func:`simulate` runs what ``node.py simulate`` runs (the same
  :class:`~learningchain.sim.config.SimConfig`, the same sizing of robust rules,
  the same provenance block) and returns the document results.json holds, as
  :class:`Results` (a ``dict``) whose :meth:`Results.table` is one flat row per
  round, ready for ``pandas.DataFrame``.
* :meth:`Network.local` starts a real local network of ``node.py run``
  processes (as ``node.py demo`` does) and always stops it.

The top layer: it imports the CLI's pieces (``cli.processes``, ``cli.demo``)
and the simulator; nothing imports it but the package's lazy names
(``learningchain/__init__.py``).
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from learningchain.core.errors import ConfigError, LearningChainError

__all__ = ["simulate", "rounds_table", "Results", "Network", "UnknownKeyword"]

#: what :func:`simulate` uses for a key neither given nor in ``config``
SIMULATE_DEFAULTS = {"nodes": 10, "rounds": 20, "dataset": "digits", "model": "mlp", "aggregator": "fedavg"}


# --- simulate -------------------------------------------------------------------

class UnknownKeyword(ConfigError, TypeError):
    """:func:`simulate` was given a keyword that is no SimConfig key: a
    ConfigError like every bad setting, and a TypeError as Python says it."""


class Results(dict):
    """A results document (results.json's content, JSON values only); a plain
    ``dict`` with :meth:`table`, :attr:`metric` and :attr:`final_metric` on top."""

    def table(self) -> list[dict[str, Any]]:
        """One flat row per round: :func:`rounds_table`."""
        return rounds_table(self)

    @property
    def metric(self) -> str:
        """The primary metric: ``accuracy`` for classifiers, ``rmse`` for regressors."""
        from learningchain.sim.results import primary_metric
        return primary_metric(self["final"])

    @property
    def final_metric(self) -> float:
        return self["final"][self.metric]


def simulate(nodes: int | None = None, rounds: int | None = None, dataset: str | None = None,
             model: str | None = None, aggregator: str | None = None, *, config: str | Path | None = None,
             baselines: bool = True, progress: Callable[[dict], None] | None = None, **more: Any) -> Results:
    """Run a simulation in this process, as ``node.py simulate`` does, and
    return its results document.

    ``nodes``, ``rounds``, ``dataset``, ``model`` and ``aggregator`` default to
    10, 20, ``"digits"``, ``"mlp"`` and ``"fedavg"`` (or what ``config`` says);
    ``more`` takes any other key of :class:`~learningchain.sim.config.SimConfig`
    (``split="dirichlet", alpha=0.5, byzantine=2, attack="sign-flip", seed=1,
    aggregator_params={"f": 2}, dp_sigma=...``). An unknown key or a bad value
    raises :class:`~learningchain.core.errors.ConfigError` naming the valid ones.

    ``config``: a ``configs/NAME.json`` the keywords override (``--config``).
    ``baselines=False`` skips the centralized and local-only baselines
    (``--no-baselines``). ``progress(entry)`` is called after each round with its
    entry. With ``out="DIR"`` results.json and the plots are written there too,
    as the CLI writes them; without it nothing is written.
    """
    from learningchain.cli.argtypes import check_rule_fits
    from learningchain.sim.config import SimConfig, load_config
    from learningchain.sim.results import _json_safe, plot_results, write_results
    from learningchain.sim.simulator import Simulation
    given = {"nodes": nodes, "rounds": rounds, "dataset": dataset, "model": model, "aggregator": aggregator}
    over = {**{k: v for k, v in given.items() if v is not None}, **more}
    if config is not None:
        cfg = load_config(config, over)
    else:
        try:
            cfg = SimConfig.from_dict({**SIMULATE_DEFAULTS, **over}, "simulate()")
        except ConfigError as exc:
            if "unknown key" in str(exc):  # a mistyped keyword: a TypeError as well, as Python's own
                raise UnknownKeyword(f"{exc}; and config, baselines, progress") from None
            raise
    check_rule_fits(cfg.aggregator, cfg.nodes, cfg.byzantine, quorum=cfg.quorum, explicit=cfg.aggregator_params,
                    byzantine_flag="byzantine", params_flag="aggregator_params" if cfg.aggregator_params else None)
    sim = Simulation(cfg)
    call = ", ".join([f"config={str(config)!r}"] * (config is not None) + [f"{k}={v!r}" for k, v in over.items()]
                     + ["baselines=False"] * (not baselines))
    results = sim.run_documented(baselines, progress, [f"learningchain.simulate({call})"])
    if cfg.out:
        write_results(cfg.out, results)
        plot_results(cfg.out, results)
    return Results(json.loads(json.dumps(_json_safe(results), allow_nan=False)))  # as results.json reads back


_RENAMED = {"precision": "detection_precision", "recall": "detection_recall"}  # beside the metrics' own
_COUNTED = ("accepted", "rejected", "update_ids")


def rounds_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rounds of a results document (``simulate``, ``node.py simulate`` or
    ``demo``'s results.json) as flat rows, one per round: scalars only, so
    ``pandas.DataFrame(rounds_table(res))`` takes it as it is.

    Columns: ``round``, ``height``, the metrics by name (``accuracy``, ``f1``,
    ... or ``rmse``, ``mae``), ``accepted`` and ``rejected`` as counts, the
    attacker detection (``attackers_rejected``, ``detection_precision``, ...),
    ``bytes``, ``bytes_per_update``, ``time_s`` (the round's timings summed) and
    ``timing_<phase>``, ``energy_<part>_j``, and the other scalars of the entry.
    Lists become counts; per-node breakdowns (``energy.per_node``) are left out."""
    if not isinstance(results, Mapping) or not isinstance(results.get("rounds"), list):
        raise ConfigError("rounds_table takes a results document (a dict with a 'rounds' list)")
    return [_flat_round(entry) for entry in results["rounds"]]


def _flat_round(entry: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"round": entry.get("round")}
    row.update(entry.get("metrics") or {})
    for key, value in entry.items():
        if key in ("round", "metrics"):
            continue
        name = _RENAMED.get(key, key)
        if key in _COUNTED or isinstance(value, list):
            row[name] = len(value or ())
        elif key == "timing":
            row["time_s"] = round(sum(float(v) for v in value.values()), 4) if value else None
            row.update(_flatten(value, "timing_"))
        elif isinstance(value, Mapping):
            row.update(_flatten(value, f"{name}_"))
        else:
            row[name] = value
    return row


def _flatten(doc: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "per_node":
            continue
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}_"))
        elif isinstance(value, list):
            out[f"{prefix}{key}"] = len(value)
        else:
            out[f"{prefix}{key}"] = value
    return out


# --- a live local network -------------------------------------------------------------

class Network:
    """A real local network: ``node.py run`` processes on loopback ports, each
    with its own data dir, key and IID partition, sharing one permissioned
    genesis (quorum: every node), as ``node.py demo`` starts them. Use it as a
    context manager, or call :meth:`stop` (also run at interpreter exit)::

        with lc.Network.local(n=4, rounds=5) as net:
            net.wait_round(5)
            print(net.status(0)["height"], net.model(0)["digest"])
    """

    def __init__(self, procs, out: Path, rounds: int | None, owned_dir: bool):
        self._procs = procs            # learningchain.cli.processes.Network
        self.out = out
        self.rounds = rounds
        self._owned_dir = owned_dir
        self._stopped = False
        atexit.register(self.stop)

    @classmethod
    def local(cls, n: int | None = None, rounds: int | None = None, dataset: str = "digits", *,
              data: str | Path | None = None, model: str = "mlp", backend: str | None = None,
              aggregator: str = "fedavg", byzantine: int = 0, attack: str | None = None, miners: int | None = None,
              block_ms: int | None = None, out: str | Path | None = None, extra: Iterable[str] = ()) -> "Network":
        """Start ``n`` nodes (default 4) and return once each answers on its port as itself.

        ``data``: your own directory instead of ``dataset`` (``node0.npz`` ...
        one per node, so ``n`` follows from it, and ``test.npz``, on which every
        node measures the global model), as ``demo --data DIR``. ``model`` /
        ``backend``: as ``--model`` / ``--backend`` (``"cnn"``, a torch ``"mlp"``,
        or your own ``"package.module:factory"``).

        ``rounds``: the nodes learn and mine until round ``rounds`` closes, then
        rest (``--rest-after-round``: they keep serving); None: until stopped.
        The last ``byzantine`` nodes run ``attack``; the first ``miners`` nodes
        mine (default 2, or 1 when the attackers take the rest). ``out``: where
        the data dirs, genesis.json and the logs go (default: a temporary
        directory, removed by :meth:`stop`). ``extra``: more ``node.py run``
        flags for every node (e.g. ``("--compression", "q8")``).
        """
        from learningchain.cli import argtypes
        from learningchain.cli.demo import make_config, partitions_for, start_network, write_genesis
        from learningchain.cli.processes import Network as Processes
        from learningchain.learning.data import DATASETS, load_data_dir, no_test_line
        from learningchain.learning.models import default_spec, spec_for
        from learningchain.ledger.genesis import permissioned
        from learningchain.node import user_models
        from learningchain.node.keyfile import load_or_create_key
        user_models.ensure(model)
        user = None
        if data is not None:
            user = load_data_dir(data)
            if n is not None and n != len(user.files):
                raise ConfigError(f"n={n} does not match the {len(user.files)} node files in {data}: leave n out")
            if user.test is None:
                raise ConfigError(f"{no_test_line(data)}: add test.npz (arrays X and y) to {data}")
            n, info = len(user.files), user.info
            spec = spec_for(info.task, info.n_features, info.n_outputs, model, backend=backend)
        else:
            n = 4 if n is None else n
            if dataset not in DATASETS:
                raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
            spec = default_spec(dataset, model, backend=backend)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        if rounds is not None and (not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1):
            raise ConfigError(f"rounds must be a positive integer or None, got {rounds!r}")
        if not 0 <= byzantine < n or (byzantine and not attack):
            raise ConfigError(f"byzantine must be in [0, {n - 1}] (at least one honest node mines), with an attack")
        miners = miners or max(1, min(2, n - byzantine))
        if miners + byzantine > n:
            raise ConfigError(f"miners ({miners}) and byzantine ({byzantine}) overlap with n={n}")
        argtypes.check_rule_fits(aggregator, n, byzantine, byzantine_flag="byzantine")
        owned = out is None
        root = Path(tempfile.mkdtemp(prefix="learningchain-net-") if owned else out).resolve()
        procs = Processes(root)
        net = cls(procs, root, rounds, owned)
        try:
            part_dir = Path(data).resolve() if user else partitions_for(dataset, n, root)
            config = make_config(n, dataset, aggregator, byzantine, block_ms=block_ms, spec=spec)
            keys = [load_or_create_key(root / "nodes" / f"node{i}").public_hex for i in range(n)]
            genesis = write_genesis(permissioned(config, keys), root / "genesis.json")
            flags = tuple(extra) + (("--rest-after-round", str(rounds)) if rounds else ())
            if user:
                flags += ("--test", str(user.test_file.resolve()))
            if ":" in spec.kind:  # the caller named their own module: the nodes may import it
                flags += ("--trust-model", spec.kind)
            start_network(procs, n, part_dir, genesis, byzantine, attack, miners=miners, extra=flags,
                          files=[f.resolve() for f in user.files] if user else None)
        except BaseException:
            net.stop()  # every process started so far, and a temporary directory
            raise
        return net

    # --- what runs ------------------------------------------------------------
    @property
    def nodes(self) -> list:
        """The node processes (:class:`~learningchain.cli.processes.NodeProc`:
        ``name``, ``url``, ``pubkey``, ``data_dir``, ``log_path``, ``popen``)."""
        return list(self._procs.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self._procs.nodes]

    def _url(self, i: int) -> str:
        if self._stopped:
            raise LearningChainError("the network is stopped")
        if not isinstance(i, int) or not 0 <= i < len(self._procs.nodes):
            raise ConfigError(f"node index must be in [0, {len(self._procs.nodes) - 1}], got {i!r}")
        return self._procs.nodes[i].url

    def _get(self, i: int, path: str, timeout: float = 5.0) -> dict:
        from learningchain.cli.processes import get
        url = self._url(i)
        self._procs.check_alive()
        doc = get(url, path, timeout=timeout)
        if doc is None:
            self._procs.check_alive()  # a dead node says so, with its log
            raise LearningChainError(f"node{i} ({url}) gave no answer to GET {path}")
        return doc

    def status(self, i: int = 0) -> dict:
        """``GET /status`` of node ``i``."""
        return self._get(i, "/status")

    def model(self, i: int = 0) -> dict:
        """Node ``i``'s current global model (``GET /model``): ``round``,
        ``digest``, ``metrics`` and ``weights`` as NumPy arrays by name."""
        from learningchain.core.encoding import decode_weights
        doc = self._get(i, "/model", timeout=30.0)
        return {**doc, "weights": decode_weights(doc["weights"])}

    def wait_round(self, r: int, timeout: float = 60.0, i: int | None = None) -> dict:
        """Block until round ``r`` is closed and measured at every node (or at
        node ``i`` only): ``GET /rounds/<r>?wait=``, a long-poll. Returns the
        round's detail document (node 0's, or node ``i``'s); raises
        LearningChainError after ``timeout`` seconds, NodeDied if a node exits."""
        from learningchain.cli.demo_rounds import closed_round
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise ConfigError(f"round must be a positive integer, got {r!r}")
        if self.rounds is not None and r > self.rounds:
            raise ConfigError(f"round {r} never closes: this network rests after round {self.rounds}")
        deadline = time.monotonic() + timeout
        docs = []
        for k in range(len(self._procs.nodes)) if i is None else [i]:
            url = self._url(k)
            while True:
                self._procs.check_alive()
                doc = closed_round(url, r, wait=max(1, min(10, int(deadline - time.monotonic()))))
                if doc is not None:
                    docs.append(doc)
                    break
                if time.monotonic() >= deadline:
                    raise LearningChainError(f"round {r} did not close at node{k} within {timeout:g} s; "
                                             f"the logs are in {self.out}")
        return docs[0]

    # --- stopping -------------------------------------------------------------
    def stop(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after a deadline); idempotent. A
        temporary ``out`` directory is removed."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._procs.stop_all()
        finally:
            for node in self._procs.nodes:  # whatever survived stop_all's own kill
                if node.popen is not None and node.popen.poll() is None:
                    node.popen.kill()
            atexit.unregister(self.stop)
            if self._owned_dir:
                shutil.rmtree(self.out, ignore_errors=True)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<learningchain.Network {len(self._procs.nodes)} nodes, {state}: {', '.join(self.urls)}>"
