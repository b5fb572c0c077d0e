"""``node.py run``'s settings from the environment and a config file, beside its command line.

Every flag ``--foo-bar`` of ``run`` can also be given as the environment
variable ``LC_FOO_BAR`` or as the key ``foo-bar`` (or ``foo_bar``) of a TOML
file named by ``--config FILE`` (or ``LC_CONFIG``). :data:`PRECEDENCE`: the
command line wins over the environment, which wins over the file, which wins
over the flag's default; a required flag (``--data-dir``, ``--port``) is
satisfied by any of them; an empty variable counts as unset. A switch
(``--mine``) takes 1/true/yes/on or 0/false/no/off; a flag taking several
values takes them comma-separated in the environment and as a TOML array in
the file (an array given to a one-value flag such as ``--peers`` is passed on
comma-joined).

Nothing here lists the flags: :func:`add_flags` makes the parser a
:class:`SourcedParser`, which walks its own actions when it parses, so a flag
added to ``run`` anywhere, by anyone, is covered. Each value goes through the
flag's own ``type=`` and ``choices``; a bad one ends the command with one line
naming where it came from (``LC_PORT: 'x' is not an integer``,
``node.toml: port: ...``) and exit status 2. ``--help`` names each flag's
variable and states the precedence.

Also here: ``--advertise-url``, the URL this node gives its peers when it differs
from the address it listens on (:func:`advertise_url`).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

ENV_PREFIX = "LC_"
CONFIG_ENV = "LC_CONFIG"
PRECEDENCE = "command line > environment > config file > default"
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
#: POSIX locale variables share the prefix: never read as flags (a test keeps run's flags clear of them)
LOCALE_VARS = frozenset(f"LC_{c}" for c in (
    "ALL", "ADDRESS", "COLLATE", "CTYPE", "IDENTIFICATION", "MEASUREMENT", "MESSAGES", "MONETARY",
    "NAME", "NUMERIC", "PAPER", "TELEPHONE", "TIME"))
EPILOG = ("Every flag can also be set in the environment as LC_<FLAG> (upper case, dashes as underscores: "
          "--data-dir is LC_DATA_DIR; a switch such as --mine takes 1/true/yes or 0/false/no; several values "
          "comma-separated; an empty variable counts as unset), or as a key of the TOML file named by "
          "--config FILE or LC_CONFIG (the flag's name, with dashes or underscores: data-dir = \"/data\", "
          "port = 5000, mine = true, peers = [\"http://a:5000\", \"http://b:5000\"]; relative paths are "
          f"relative to the working directory). Precedence: {PRECEDENCE}. A required flag may come from any "
          "of them.")

_UNSET = object()  # "not on the command line" (the namespace placeholder while parsing)


class SourceError(Exception):
    """A value from the environment or the config file that cannot be used (one line, naming its source)."""


def long_name(action: argparse.Action) -> str:
    """The flag's name without dashes: its first ``--long`` option (``data-dir``)."""
    longs = [o for o in action.option_strings if o.startswith("--")]
    return (longs or action.option_strings)[0].lstrip("-")


def env_name(action: argparse.Action) -> str:
    """``LC_DATA_DIR`` for ``--data-dir``."""
    return ENV_PREFIX + long_name(action).replace("-", "_").upper()


def settable(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's flags that the environment and a config file may set: every
    option that stores something (not --help, --version or --config itself)."""
    return [a for a in parser._actions
            if a.option_strings and a.dest not in (argparse.SUPPRESS, "config")
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def _switch_value(action: argparse.Action, raw: Any, source: str) -> Any:
    """The value of a flag that takes no argument (``--mine``), from a word or a TOML boolean."""
    if isinstance(action, argparse._CountAction):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise SourceError(f"{source}: {raw!r} is not a count (0, 1, 2, ...)") from None
    word = str(raw).strip().lower() if not isinstance(raw, bool) else ("true" if raw else "false")
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise SourceError(f"{source}: {raw!r} is not a boolean (1/true/yes or 0/false/no)")
    on = word in TRUE_WORDS
    if isinstance(action, argparse.BooleanOptionalAction):
        return on
    if isinstance(action, argparse._AppendConstAction):
        return [*(action.default or []), action.const] if on else action.default
    return action.const if on else action.default


def _takes_many(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+", argparse.REMAINDER) or (
        isinstance(action.nargs, int) and action.nargs > 1)


def _text(value: Any) -> str:
    """A TOML scalar as the command line would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SourcedParser(argparse.ArgumentParser):
    """An argparse parser whose flags may also come from ``LC_*`` variables and a
    TOML config file (module docstring). Mixed in front of the parser's own
    class by :func:`add_flags`."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        ns = namespace if namespace is not None else argparse.Namespace()
        actions = settable(self)
        fresh = [a for a in actions if not hasattr(ns, a.dest)]
        for a in fresh:
            setattr(ns, a.dest, _UNSET)  # argparse sets no default where the namespace has a value
        required = [a for a in actions if a.required]
        for a in required:
            a.required = False  # checked below, once the environment and the file have had their say
        try:
            ns, extras = super().parse_known_args(args, ns)
        finally:
            for a in required:
                a.required = True
        try:
            self._fill(ns, fresh, required)
        except SourceError as exc:
            self.error(str(exc))
        return ns, extras

    def _fill(self, ns: argparse.Namespace, fresh: list[argparse.Action], required: list) -> None:
        env = os.environ
        config = getattr(ns, "config", None) or env.get(CONFIG_ENV) or None
        where = "--config" if getattr(ns, "config", None) else CONFIG_ENV
        from_file = self._read_config(config, where) if config else {}
        missing = []
        for action in fresh:
            if getattr(ns, action.dest) is not _UNSET:
                continue  # on the command line (or set by an earlier flag of the same dest)
            name = env_name(action)
            if env.get(name, "") != "" and name not in LOCALE_VARS:  # empty: unset (a template's ${X:-})
                value = self._convert(action, env[name], name, split=True)
            elif action in from_file:
                key, raw = from_file[action]
                value = self._convert(action, raw, f"{config}: {key}", split=False)
            elif action in required:
                missing.append(f"{action.option_strings[0]} (or {name}, or {long_name(action)} in the --config file)")
                continue
            else:
                value = action.default
                if isinstance(value, str):  # as argparse converts a string default (no choices check)
                    value = self._get_value(action, value)
            setattr(ns, action.dest, value)
        if missing:
            raise SourceError("the following arguments are required: " + ", ".join(missing))

    def _read_config(self, path: str, where: str) -> dict[argparse.Action, tuple[str, Any]]:
        """The TOML file's values by flag: unknown keys, a key twice and tables refused."""
        import tomllib
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise SourceError(f"{where} {path}: no such config file") from None
        except OSError as exc:
            raise SourceError(f"{where} {path}: cannot read it ({exc.strerror or exc})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: not a TOML file ({exc})") from None
        by_name = {}
        for action in settable(self):
            for option in action.option_strings:
                if option.startswith("--"):
                    by_name[option[2:]] = action
        out: dict[argparse.Action, tuple[str, Any]] = {}
        for key, value in doc.items():
            action = by_name.get(key.replace("_", "-"))
            if isinstance(value, dict):
                raise SourceError(f"{path}: [{key}] is a table: give the settings at the top level "
                                  f"(data-dir = ..., port = ...)")
            if action is None:
                raise SourceError(f"{path}: unknown key {key!r}: not a flag of '{self.prog}' (keys are its "
                                  f"flags' names, e.g. data-dir)")
            if action in out:
                raise SourceError(f"{path}: {key!r} sets {action.option_strings[0]} again (as {out[action][0]!r})")
            out[action] = (key, value)
        return out

    def _convert(self, action: argparse.Action, raw: Any, source: str, split: bool) -> Any:
        """``raw`` (a variable's text or a TOML value) through the flag's own type= and choices."""
        if action.nargs == 0:
            return _switch_value(action, raw, source)
        if _takes_many(action):
            items = ([s.strip() for s in raw.split(",") if s.strip()] if split and isinstance(raw, str)
                     else [_text(v) for v in (raw if isinstance(raw, list) else [raw])])
            return [self._one(action, item, source) for item in items]
        if isinstance(raw, list):
            raw = ",".join(_text(v) for v in raw)
        return self._one(action, _text(raw), source)

    def _one(self, action: argparse.Action, text: str, source: str) -> Any:
        try:
            value = self._get_value(action, text)
            self._check_value(action, value)
        except argparse.ArgumentError as exc:
            raise SourceError(f"{source}: {exc.message}") from None
        return value

    def format_help(self) -> str:
        for action in settable(self):
            if action.help is not argparse.SUPPRESS and not getattr(action, "_env_documented", False):
                action.help = f"{action.help or ''} [env: {env_name(action)}]".lstrip()
                action._env_documented = True  # type: ignore[attr-defined]
        return super().format_help()


_SOURCED: dict[type, type] = {}


def sourced(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser``, from now on a :class:`SourcedParser` (in front of its own class,
    e.g. cli.main's one-line-error parser), with the precedence in its ``--help``."""
    cls = type(parser)
    if not issubclass(cls, SourcedParser):
        if cls not in _SOURCED:
            _SOURCED[cls] = type(f"Sourced{cls.__name__}", (SourcedParser, cls), {})
        parser.__class__ = _SOURCED[cls]
        parser.epilog = f"{parser.epilog}\n\n{EPILOG}" if parser.epilog else EPILOG
    return parser


def advertise_url(text: str) -> str:
    """``--advertise-url``: ``http(s)://host[:port]`` without a path, a host peers
    can reach (not a wildcard such as 0.0.0.0); a bare ``host:port`` means http."""
    from learningchain.cli.argtypes import node_url
    from learningchain.node.p2p.peer_urls import check_peer_url, is_wildcard, normalize
    from urllib.parse import urlsplit
    url = node_url(text)
    problem = check_peer_url(url)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    if is_wildcard(urlsplit(url).hostname or ""):
        raise argparse.ArgumentTypeError(f"{text!r}: peers cannot reach a wildcard address; give this node's "
                                         f"name or address as its peers see it, e.g. https://node3.lab:5000")
    return normalize(url)


def add_flags(p: argparse.ArgumentParser) -> None:
    """``run``'s --advertise-url and --config, and every flag of ``p`` settable
    from the environment and the config file (:func:`sourced`)."""
    p.add_argument("--advertise-url", type=advertise_url, metavar="URL",
                   help="the URL this node gives its peers (hello, peer exchange, /peers) when it differs from "
                        "where it listens, e.g. --host 0.0.0.0 --advertise-url https://node3.lab:5000 "
                        "(default http://HOST:PORT; required with a wildcard --host such as 0.0.0.0)")
    p.add_argument("--config", metavar="FILE",
                   help=f"a TOML file of run settings, keys as the flags' names (data-dir = \"/data\"); also "
                        f"{CONFIG_ENV}=FILE. Precedence: {PRECEDENCE}")
    sourced(p)


def advertised(args: argparse.Namespace) -> str | None:
    """``run``'s --advertise-url, checked against --host before anything is written:
    a node listening on a wildcard address must say how peers reach it."""
    from learningchain.node.p2p.peer_urls import own_url
    own_url(args.host, args.port, args.advertise_url)  # a ConfigError: one line, exit status 2
    return args.advertise_url
