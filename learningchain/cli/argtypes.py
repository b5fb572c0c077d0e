"""Value types for the command line (argparse ``type=``): one definition of
"a positive integer", "a port" and the like for every ``node.py`` command, so
that a bad value gives the same one-line message wherever it is typed."""
from __future__ import annotations

import argparse
import math


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (node counts, rounds, workers, ...)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def count(text: str) -> int:
    """An integer >= 0 (attackers, seeds, ...)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or a positive integer")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1..65535)")
    return value


def node_url(text: str) -> str:
    """The URL of a node's API, ``http(s)://host[:port]`` (a bare ``host:port``
    means http), normalised without a trailing ``/``: refused up front, so that
    ``ftp://...`` or port 99999 is one clear line rather than a requests error."""
    from urllib.parse import urlsplit
    url = text.strip()
    url = (url if "://" in url else "http://" + url).rstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port  # None when absent; ValueError outside 0..65535 or not a number
    except ValueError:
        parts, port = None, 0
    if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname
                              or parts.query or parts.fragment or parts.username is not None):
        why = (f"scheme {parts.scheme!r} is not http or https" if parts.scheme not in ("http", "https")
               else "give http(s)://host[:port], without a query or credentials")
    elif port == 0:
        why = "the port must be a number in 1..65535"
    else:
        return url
    raise argparse.ArgumentTypeError(f"{text!r} is not a node URL: {why} (e.g. http://127.0.0.1:5000)")


def peer_urls(text: str) -> list[str]:
    """``--peers``: comma-separated peer URLs (:mod:`learningchain.node.p2p.peer_urls`), each
    ``http(s)://host[:port]``; a bad one is refused, never silently dropped."""
    from learningchain.core.errors import ConfigError
    from learningchain.node.p2p.peer_urls import parse_peer_list
    try:
        return parse_peer_list(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--peers: ")) from None


def number_list(text: str) -> list[float]:
    """Comma-separated finite numbers >= 0 (``experiment dp --sigmas 0,0.3,1``)."""
    values = [non_negative(item.strip()) for item in text.split(",") if item.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one number, e.g. 0,0.3,1")
    return values


def non_negative(text: str) -> float:
    """A finite number >= 0 (noise, thresholds, concentrations)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = non_negative(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def probability(text: str) -> float:
    """A number strictly between 0 and 1 (a DP delta)."""
    value = non_negative(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in (0, 1)")
    return value


#: the differential-privacy flags shared by ``run``, ``simulate`` and ``demo``
DP_FLAGS = ("dp_mode", "dp_epsilon", "dp_delta", "dp_sigma", "dp_clip", "dp_sample_rate")


#: ``--model``'s built-in choices; anything of the form package.module:factory is a user's torch module
MODEL_NAMES = ("mlp", "softmax", "linear", "cnn")


def model_kind(text: str) -> str:
    """``--model``: a built-in model or a user's ``package.module:factory``
    (checked in full, with its backend, when the model is built)."""
    if text in MODEL_NAMES:
        return text
    module, sep, attr = text.partition(":")
    if sep and module and attr and all(part.isidentifier() for part in (*module.split("."), attr)):
        return text
    raise argparse.ArgumentTypeError(f"unknown model {text!r}: choose one of {', '.join(MODEL_NAMES)} "
                                     f"or your own torch module as package.module:factory")


def add_model_flags(p: argparse.ArgumentParser, default: str | None = "mlp") -> None:
    """``--model`` and ``--backend``, the same on every command that builds a model."""
    p.add_argument("--model", type=model_kind, default=default, metavar="MODEL",
                   help="mlp (default), softmax, linear (NumPy); cnn (PyTorch); or your own PyTorch module "
                        "as package.module:factory (a function returning a torch.nn.Module, importable from "
                        "the working directory)")
    p.add_argument("--backend", choices=("numpy", "torch"),
                   help="the backend of --model mlp (default numpy); cnn and module:factory are torch "
                        "(the optional extra: pip install -r requirements-torch.txt)")


def add_dp_flags(p: argparse.ArgumentParser, defaults: bool = True, sigma: bool = True) -> None:
    """--dp-mode/--dp-epsilon/--dp-delta/--dp-clip/--dp-sample-rate (and --dp-sigma).
    ``defaults=False`` leaves them None (simulate: a config file may set them)."""
    d = (lambda v: v) if defaults else (lambda v: None)
    p.add_argument("--dp-mode", choices=("node", "sample", "distributed"), default=None,
                   help="differential privacy: node = noise on the whole update (node-level), "
                        "sample = DP-SGD in local training (record-level), distributed = Skellam noise "
                        "shares in the securely aggregated sum (node-level, needs --secure-aggregation); "
                        "default node when DP is on")
    p.add_argument("--dp-epsilon", type=non_negative, default=d(0.0),
                   help="target epsilon over all rounds: calibrates the noise (dp-accounting)")
    p.add_argument("--dp-delta", type=probability, default=d(1e-5), help="delta of (epsilon, delta) (1e-5)")
    if sigma:
        p.add_argument("--dp-sigma", type=non_negative, default=d(0.0),
                       help="node mode: noise std in units of C; sample mode: noise multiplier z (0 = off)")
    p.add_argument("--dp-clip", type=non_negative, default=d(0.0),
                   help="clip norm C: of the update (node mode), of each example's gradient (sample, default 1)")
    p.add_argument("--dp-sample-rate", type=fraction, default=d(0.0),
                   help="sample mode: Poisson sampling rate q of DP-SGD (default 0.25)")


def dp_argv(args: argparse.Namespace, rounds: int) -> tuple[str, ...]:
    """The DP flags of ``args`` as ``node.py run`` arguments (the demo passes them on)."""
    out: list[str] = []
    for name in DP_FLAGS:
        value = getattr(args, name, None)
        if value not in (None, 0, 0.0) and not (name == "dp_delta" and value == 1e-5):
            out += [f"--{name.replace('_', '-')}", f"{value}" if isinstance(value, str) else repr(value)]
    if out and getattr(args, "dp_epsilon", 0):
        out += ["--dp-rounds", str(rounds)]
    return tuple(out)


def require_secure_aggregation(dp_mode: str | None, secure_aggregation: bool) -> None:
    """``--dp-mode distributed`` without secure aggregation: a one-line ConfigError."""
    if dp_mode == "distributed" and not secure_aggregation:
        from learningchain.core.errors import ConfigError
        raise ConfigError("--dp-mode distributed needs secure aggregation (--secure-aggregation, or a genesis "
                          "with privacy.secure_aggregation): its noise shares are private only inside the "
                          "securely aggregated sum")


def node_py() -> str:
    """How to run node.py again in a printed hint: the interpreter running now
    (``.venv/bin/python`` when it is the project's venv), not a bare ``python``,
    which on most machines lacks the requirements and ends in a traceback."""
    import os
    import sys
    from pathlib import Path
    exe = Path(sys.executable)
    try:
        rel = os.path.relpath(exe, Path.cwd())
    except ValueError:
        rel = str(exe)
    return f"{rel if not rel.startswith('..') else exe} node.py"


def check_rule_fits(rule: str, nodes: int, byzantine: int = 0, *, quorum: int | None = None,
                    explicit=None, byzantine_flag: str | None = "--byzantine",
                    params_flag: str | None = None) -> None:
    """A ConfigError, in the terms of the command that was run, when ``rule``
    sized for ``byzantine`` attackers among ``nodes`` (aggregation.sized_params,
    as demo, simulate and experiment size it) needs more updates a round than the
    quorum (``quorum``, default one update per node) can bring: Krum needs
    2f + 3, Bulyan 4f + 3. It names what works: ``--nodes N`` with the least N
    computed, ``--quorum``, a lower ``byzantine_flag``, or ``params_flag``."""
    from learningchain.core.errors import ConfigError
    from learningchain.learning.aggregation import params as agg
    q = quorum or nodes
    params = agg.sized_params(rule, nodes, byzantine, quorum, explicit)
    need = agg.min_updates(rule, params)
    if need <= q:
        return
    fixes = []
    if quorum is not None:
        fixes.append(f"--quorum {need} or more" + (f" (with --nodes {need} or more)" if need > nodes else ""))
    else:
        least = agg.min_nodes(rule, byzantine, explicit)
        if least is not None:
            fixes.append(f"--nodes {least} or more")
    lower = agg.max_byzantine(rule, nodes, byzantine, explicit) if byzantine and byzantine_flag else None
    if lower is not None:
        fixes.append(f"lower {byzantine_flag} to {lower}")
    if params_flag:
        fixes.append(f"smaller parameters in {params_flag}")
    shown = ", ".join(f"{k}={v}" for k, v in agg.parse_params(rule, params).items() if k in ("f", "m", "l", "beta"))
    raise ConfigError(f"aggregator {rule} ({shown}) needs at least {need} updates a round, more than the "
                      f"quorum of {q}{'' if quorum is not None else ' (one update per node)'}: pass "
                      + (", or ".join(fixes) or "another --aggregator"))


class LazyCommands(argparse._SubParsersAction):
    """Subcommands whose flags are added only when that command is parsed.

    ``node.py --help`` needs every command's name and one-line help, not its
    flags; the flags of ``run``, ``demo`` or ``simulate`` take their choices from
    the learning stack (numpy), which an inspection command must not import to
    start in well under 0.3 s. A command registers its flags with :func:`later`;
    they are added the moment argparse hands that command its arguments, so the
    parse, its errors and ``node.py CMD --help`` are exactly those of a parser
    built in full (:func:`complete` builds every command's flags, e.g. for tests
    that walk all of them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending: dict[str, object] = {}

    def later(self, name: str, add_flags) -> None:
        self._pending[name] = add_flags

    def fill(self, name: str) -> None:
        add_flags = self._pending.pop(name, None)
        if add_flags is not None:
            add_flags()

    def __call__(self, parser, namespace, values, option_string=None):
        if values:
            self.fill(values[0])
        namespace.command_line = [parser.prog, *values]  # as typed, for results' provenance
        super().__call__(parser, namespace, values, option_string)


def later(sub, parser: argparse.ArgumentParser, add_flags) -> argparse.ArgumentParser:
    """``add_flags(parser)`` when ``parser``'s command is parsed (``sub`` a
    :class:`LazyCommands`), else now (a plain argparse subparsers action)."""
    if isinstance(sub, LazyCommands):
        name = next(n for n, p in sub._name_parser_map.items() if p is parser)
        sub.later(name, lambda: add_flags(parser))
    else:
        add_flags(parser)
    return parser


def complete(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` with the flags of every lazily registered command added."""
    for action in parser._actions:
        if isinstance(action, LazyCommands):
            for name in list(action._pending):
                action.fill(name)
    return parser
