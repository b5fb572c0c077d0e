"""The node's key file, ``<data-dir>/node_key.pem``: written once with mode
0600, refused when missing, corrupt or readable by others, and never minted
again for a data dir whose store already holds a chain (that node would lose
its identity: a stranger to the allow-list and to its own past updates).

The key itself (signing, addresses, PEM form) is :mod:`learningchain.core.crypto`.
Hints name the command as ``'node.py keygen ...'``: this layer does not know
the interpreter; the command line (cli/main.py ``one_line``) prints the one
that runs (``.venv/bin/python node.py``), never a bare ``python``.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from learningchain.core.crypto import InvalidKey, PrivateKey, WrongCurve
from learningchain.core.errors import KeyFileError
from learningchain.node.store import store_path

KEY_FILE = "node_key.pem"


def key_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / KEY_FILE


def save_key(key: PrivateKey, data_dir: str | os.PathLike) -> Path:
    """Write the key as PEM with mode 0600 (created so, never widened)."""
    path = key_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.to_pem())
    return path


def load_key(data_dir: str | os.PathLike) -> PrivateKey:
    """Load the node key, refusing a missing, corrupt or group/world-readable file."""
    path = key_path(data_dir)
    if not path.exists():
        raise KeyFileError(f"no key file at {path}: create one with 'node.py keygen --data-dir {data_dir}'")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is readable by others (mode {mode:o}): run 'chmod 600 {path}'")
    try:
        return PrivateKey.from_pem(path.read_bytes())
    except WrongCurve:
        raise KeyFileError(f"key file {path} is not on secp256k1: generate a new one with "
                           f"'node.py keygen --data-dir {data_dir}' (after moving this one away)") from None
    except (OSError, InvalidKey):
        raise KeyFileError(f"key file {path} is not a valid PEM secp256k1 key: restore it from a backup "
                           f"or move it away and create one with 'node.py keygen --data-dir {data_dir}'") from None


def load_or_create_key(data_dir: str | os.PathLike) -> PrivateKey:
    """The node key, created on first start only. A data dir that already holds
    a chain store but no key lost its identity (a deleted or misplaced file):
    silently minting a new key there would make the node a stranger to the
    allow-list and to its own past updates, so that is a KeyFileError."""
    if not key_path(data_dir).exists():
        store = store_path(data_dir)
        if store.exists():
            raise KeyFileError(f"no key file at {key_path(data_dir)} but {store} holds a chain: restore the "
                               f"key from a backup, or start with a fresh --data-dir")
        key = PrivateKey.generate()
        save_key(key, data_dir)
        return key
    return load_key(data_dir)
