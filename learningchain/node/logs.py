"""The node's log through the standard :mod:`logging` module, and the run flags of the operations surface.

Every :class:`~learningchain.node.service.Node` has its own logger
(:func:`node_logger`: its name carries the port and a per-process sequence
number, it does not propagate, its handler is its own), so several nodes in one
test process never share a handler or a level. ``Node.log(line)`` emits one
INFO record on it.

* One line per record: a record's newlines are escaped (``\\n``), and each
  record is written with a single ``write`` under the handler's lock and
  flushed, so threads' lines never interleave (``print()`` wrote the newline
  separately, and lines merged).
* ``--log-format text`` (default): ``HH:MM:SS.mmm [PORT] message``, the text
  the node printed before (the demo and the tests grep these lines).
  ``--log-format json``: one object per line, ``{"ts", "level", "port",
  "node", "thread", "msg"}`` (``ts`` in UTC, ISO 8601 with milliseconds; ``node``
  the node's address; ``exc`` with a traceback).
* ``--log-file FILE``: appended to (the default is stdout, as before);
  ``--log-level``: ``debug``, ``info`` (default), ``warning``, ``error``.

:func:`route_process_logs` (``node.py run``, one node per process) sends the
other loggers of the process (waitress, the API's unhandled errors) to the same
place in the same format.

The CLI imports this module to build ``node.py run``'s parser, so it uses the
standard library (and core's errors) only: :func:`add_ops_flags` adds the logging flags and
``--admin-allow`` (the address ranges that may use the admin endpoints,
:func:`admin_networks`; enforced by :mod:`learningchain.node.web.ops_routes`).
"""
from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import logging
import sys
import time
from dataclasses import dataclass, field

from learningchain.core.errors import ConfigError

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: what ``--admin-allow loopback`` stands for.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def admin_networks(text: str) -> tuple[Network, ...] | None:
    """``--admin-allow``: a comma list of ``loopback``, CIDRs (``10.0.0.0/8``) or
    single addresses; ``any`` -> None (everyone). Raises ValueError on a bad item."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise ValueError("--admin-allow is empty: give 'loopback', 'any' or a comma list of CIDRs")
    nets: list[Network] = []
    for item in items:
        if item.lower() == "any":
            return None
        if item.lower() == "loopback":
            nets.extend(LOOPBACK)
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"--admin-allow: {item!r} is neither 'loopback', 'any', an address nor a CIDR "
                             f"(e.g. 10.0.0.0/8)") from None
    return tuple(nets)


def client_ip(addr: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as compared: an IPv4-mapped IPv6 address as its IPv4 address,
    without a zone (``%eth0``); None if it is not an IP address."""
    try:
        ip = ipaddress.ip_address((addr or "").split("%", 1)[0])
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def address_allowed(nets: tuple[Network, ...] | None, addr: str | None) -> bool:
    """Is the client address ``addr`` within ``nets`` (None: anyone)? An
    unparsable address is refused."""
    if nets is None:
        return True
    ip = client_ip(addr)
    return ip is not None and any(ip.version == n.version and ip in n for n in nets)


@dataclass(frozen=True)
class OpsSettings:
    """The operations flags of ``node.py run`` (:func:`add_ops_flags`), as the Node takes them."""
    log_format: str = "text"
    log_file: str | None = None
    log_level: str = "info"
    admin_allow: str = "loopback"
    admin_nets: tuple[Network, ...] | None = field(default=LOOPBACK, compare=False)

    @classmethod
    def parse(cls, log_format: str = "text", log_file: str | None = None, log_level: str = "info",
              admin_allow: str = "loopback") -> "OpsSettings":
        """Checked settings; ValueError names the bad flag."""
        if log_format not in LOG_FORMATS:
            raise ValueError(f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
        if str(log_level).lower() not in LOG_LEVELS:
            raise ValueError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
        return cls(log_format, log_file or None, str(log_level).lower(), admin_allow, admin_networks(admin_allow))


def _admin_allow_arg(text: str) -> str:
    try:
        admin_networks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--admin-allow: ")) from None
    return text


def add_ops_flags(p: argparse.ArgumentParser) -> None:
    """The operations flags of ``node.py run``: logging and the admin allow-list."""
    p.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                   help="text (default): 'HH:MM:SS.mmm [PORT] message' lines; json: one object per line "
                        "with ts, level, port, node, thread and msg")
    p.add_argument("--log-file", metavar="FILE", help="append the log to FILE (default: stdout)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged (default info)")
    p.add_argument("--admin-allow", type=_admin_allow_arg, default="loopback", metavar="NETS",
                   help="who may use the admin endpoints (the standalone miner's /mining/*, POST /peers naming "
                        "another host): 'loopback' (default), 'any', or a comma list of CIDRs/addresses, e.g. "
                        "loopback,10.0.0.0/8. The miner token is required as well")


def ops_settings(args: argparse.Namespace) -> OpsSettings:
    """The :class:`OpsSettings` of parsed ``node.py run`` arguments."""
    return OpsSettings.parse(args.log_format, args.log_file, args.log_level, args.admin_allow)


# --- formatting and handlers ----------------------------------------------------------------

def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``HH:MM:SS.mmm [PORT] message`` (local time), the node's line of old; a record
    of another logger (waitress, an unhandled error) adds its level and name."""

    def __init__(self, port: int):
        super().__init__()
        self.port = port

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        msg = record.getMessage()
        if not getattr(record, "lc_node", False):
            msg = f"{record.levelname} {record.name}: {msg}"
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return _one_line(f"{stamp}.{int(record.msecs):03d} [{self.port}] {msg}")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ms), level, port, node, thread, msg (+ logger, exc)."""

    def __init__(self, port: int, address: str | None = None):
        super().__init__()
        self.port, self.address = port, address

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        doc = {"ts": ts, "level": record.levelname.lower(), "port": self.port, "node": self.address,
               "thread": record.threadName, "msg": record.getMessage()}
        if not getattr(record, "lc_node", False):
            doc["logger"] = record.name
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)  # json escapes newlines: one line


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at each record (a test may swap it), and
    stays silent if it is closed (the terminal went away: the node keeps serving)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def handleError(self, record: logging.LogRecord) -> None:
        pass


class AppendFileHandler(logging.FileHandler):
    """``--log-file``: appended to, flushed per record (one write each)."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # a full disk must not stop the node


_sequence = itertools.count(1)


def node_logger(port: int, settings: OpsSettings | None = None, quiet: bool = False,
                address: str | None = None) -> logging.Logger:
    """A fresh logger for one node: its own name (port and sequence number), its
    own handler, no propagation; ``address`` goes into its JSON lines. ``quiet``:
    a logger that drops everything."""
    settings = settings or OpsSettings()
    logger = logging.getLogger(f"learningchain.node[{port}]#{next(_sequence)}")
    logger.propagate = False
    if quiet:
        logger.disabled = True
        return logger
    logger.setLevel(settings.log_level.upper())
    try:
        handler = AppendFileHandler(settings.log_file, mode="a", encoding="utf-8") if settings.log_file \
            else StdoutHandler()
    except OSError as exc:
        raise ConfigError(f"--log-file {settings.log_file}: cannot append to it ({exc.strerror})") from None
    handler.setFormatter(JsonFormatter(port, address) if settings.log_format == "json" else TextFormatter(port))
    logger.addHandler(handler)
    return logger


def emit(logger: logging.Logger, line: str, level: int = logging.INFO) -> None:
    """One record of the node itself (``Node.log``)."""
    if not logger.disabled:
        logger.log(level, line, extra={"lc_node": True})


def route_process_logs(logger: logging.Logger) -> None:
    """``node.py run``: the process's other loggers (root: waitress, the API's
    unhandled errors) go to the node's handler, at its level."""
    root = logging.getLogger()
    for h in logger.handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(logger.level or logging.INFO)
