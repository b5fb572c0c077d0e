#!/usr/bin/env python3
"""Entry point of the LearningChain container: one node, configured by environment variables.

Every ``node.py run`` flag ``--foo-bar`` can come from ``LC_FOO_BAR`` (the shared convention of
``node.py run``). This script only prepares what ``run`` needs before it starts, then *replaces
itself* with ``python node.py run`` (exec: the node is the container's main process and receives
SIGTERM itself, which stops it cleanly):

1. The pod ordinal: ``LEARNINGCHAIN_ORDINAL``, else the digits after the last ``-`` of the host
   name (a StatefulSet pod ``lc-node-2`` is ordinal 2). Every ``{ordinal}`` in an ``LC_*`` or
   ``LEARNINGCHAIN_KEY_FILE`` value is replaced by it, so one pod template gives each pod its own
   files (``LC_DATA=/app/data/digits-4-iid/node{ordinal}.npz``).
2. The node key in ``LC_DATA_DIR``: copied from ``LEARNINGCHAIN_KEY_FILE`` (a mounted Secret,
   e.g. ``/etc/learningchain/keys/key-{ordinal}.pem``) with mode 600 when the data dir has none,
   refused when the data dir already holds a *different* key; without that variable
   ``node.py run`` creates the key on first start (and refuses to mint one for a data dir whose
   chain store lost its key).
3. ``LC_TLS_KEY`` (the node's TLS key), when its file is readable by group or others (a Secret
   mounted for the pod's fsGroup), is copied to a private file (mode 600, in
   ``LEARNINGCHAIN_PRIVATE_DIR``, default ``/tmp/learningchain``) and the variable points there:
   ``node.py run`` refuses a key file others can read.
4. The essential flags are passed explicitly from their variables (``LC_DATA_DIR``, ``LC_PORT``,
   ``LC_HOST``, ``LC_GENESIS``, ``LC_PEERS``, ``LC_MINE``, ``LC_DATA``, ``LC_TEST``), so they work
   whether or not this ``node.py`` also reads ``LC_*`` itself, and so are the TLS files
   (``LC_TLS_CERT``, ``LC_TLS_KEY``, ``LC_TLS_CA``: a ``node.py`` without TLS then refuses to start
   rather than serve plain HTTP); every other ``LC_*`` variable is left in the environment for
   ``node.py run``. Arguments given to the container are appended.

Failures are one line on stderr and exit status 2 (configuration) or 1 (a file that cannot be
used); nothing is started then. Standard library only.
"""
from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

APP = Path(os.environ.get("LEARNINGCHAIN_APP") or Path(__file__).resolve().parents[1])
KEY_FILE = "node_key.pem"  # learningchain.node.keyfile.KEY_FILE
#: variables passed as flags (value flags, then boolean flags)
VALUE_FLAGS = (("LC_DATA_DIR", "--data-dir"), ("LC_PORT", "--port"), ("LC_HOST", "--host"),
               ("LC_GENESIS", "--genesis"), ("LC_PEERS", "--peers"), ("LC_DATA", "--data"),
               ("LC_TEST", "--test"),
               # TLS asked for is never dropped silently: a node.py without these flags refuses them
               ("LC_TLS_CERT", "--tls-cert"), ("LC_TLS_KEY", "--tls-key"), ("LC_TLS_CA", "--tls-ca"))
BOOL_FLAGS = (("LC_MINE", "--mine"),)
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no", "")  # the LC_* convention; empty: unset
PLACEHOLDER = "{ordinal}"
PRIVATE_DIR = "/tmp/learningchain"


class EntryError(Exception):
    """One line for stderr, with the exit status."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def ordinal(env: dict[str, str]) -> str | None:
    """LEARNINGCHAIN_ORDINAL, else the trailing ``-N`` of the host name, else None."""
    given = env.get("LEARNINGCHAIN_ORDINAL", "").strip()
    if given:
        if not given.isdigit():
            raise EntryError(f"LEARNINGCHAIN_ORDINAL={given!r} is not a non-negative integer")
        return str(int(given))
    match = re.search(r"-(\d+)$", env.get("HOSTNAME") or socket.gethostname())
    return str(int(match.group(1))) if match else None


def substitute(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``{ordinal}`` replaced in the LC_* and LEARNINGCHAIN_KEY_FILE values."""
    out = dict(env)
    n = ordinal(env)  # a bad LEARNINGCHAIN_ORDINAL is refused even where nothing uses it
    users = sorted(k for k, v in env.items()
                   if (k.startswith("LC_") or k == "LEARNINGCHAIN_KEY_FILE") and PLACEHOLDER in v)
    if not users:
        return out
    if n is None:
        raise EntryError(f"{users[0]} uses {PLACEHOLDER} but no ordinal is known: set "
                         f"LEARNINGCHAIN_ORDINAL or run with a host name ending in -N (a StatefulSet pod)")
    for k in users:
        out[k] = env[k].replace(PLACEHOLDER, n)
    return out


def boolean(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise EntryError(f"{name}={value!r}: expected 1/true/yes or 0/false/no")


def install_key(data_dir: Path, source: Path) -> None:
    """Copy the key from ``source`` (a mounted Secret) into the data dir, mode 600, once."""
    try:
        wanted = source.read_bytes()
    except OSError as exc:
        raise EntryError(f"LEARNINGCHAIN_KEY_FILE {source}: cannot read it ({exc.strerror}): is the "
                         f"Secret with this pod's key mounted?", 1) from None
    target = data_dir / KEY_FILE
    if target.exists():
        if target.read_bytes().strip() != wanted.strip():
            raise EntryError(f"{target} holds another key than {source}: this data dir belongs to "
                             f"another node identity (move one of them away)", 1)
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(wanted)
    print(f"entrypoint: key {target} installed from {source}", file=sys.stderr)


def private_tls_key(env: dict[str, str]) -> None:
    """Point LC_TLS_KEY at a mode-600 copy when its file is group/world readable."""
    given = env.get("LC_TLS_KEY", "").strip()
    if not given:
        return
    source = Path(given)
    try:
        if not source.stat().st_mode & 0o077:
            return
        data = source.read_bytes()
    except OSError as exc:
        raise EntryError(f"LC_TLS_KEY {source}: cannot read it ({exc.strerror}): is the TLS Secret mounted?",
                         1) from None
    private = Path(env.get("LEARNINGCHAIN_PRIVATE_DIR") or PRIVATE_DIR)
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = private / "tls.key"
    target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    env["LC_TLS_KEY"] = str(target)


def prepare(env: dict[str, str]) -> list[str]:
    """Check the environment, put the keys in place (``env`` may change); the argv of ``node.py run``."""
    data_dir = env.get("LC_DATA_DIR", "").strip()
    if not data_dir:
        raise EntryError("LC_DATA_DIR is not set: the node's directory (the image sets /data)")
    if not env.get("LC_PORT", "").strip():
        raise EntryError("LC_PORT is not set: the port of the node's API (the image sets 5000)")
    switches = [flag for name, flag in BOOL_FLAGS if name in env and boolean(name, env[name])]
    # everything is checked: only now is anything written
    d = Path(data_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EntryError(f"LC_DATA_DIR {d}: cannot create it ({exc.strerror}): mount a writable volume "
                         f"there", 1) from None
    key_source = env.get("LEARNINGCHAIN_KEY_FILE", "").strip()
    if key_source:
        install_key(d, Path(key_source))
    private_tls_key(env)
    argv = [sys.executable, str(APP / "node.py"), "run"]
    for name, flag in VALUE_FLAGS:
        value = env.get(name, "").strip()
        if value:
            argv += [flag, value]
    return argv + switches


def main(extra: list[str]) -> int:
    try:
        env = substitute(dict(os.environ))
        argv = prepare(env) + extra
    except EntryError as exc:
        print(f"entrypoint: {exc}", file=sys.stderr)
        return exc.status
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # never returns: the node takes over this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
