"""Who may use ``/mining/*``: the node's own miner, proven by a token file.

A node writes a fresh random token to ``<data-dir>/miner.token`` (mode 0600)
every time it starts; ``GET /mining/template`` and ``POST /mining/submit``
require it in the :data:`HEADER` header. Whoever can read the node's data
directory (the operator, the standalone miner started with ``--data-dir``) can
mine for it; an outsider polling the template endpoint gets 403
``mining-forbidden`` instead of evicting the miner's templates (issue 10, item 8:
~665 polls/s took a standalone miner from 53 blocks per 25 s to 1). Bitcoin
Core guards ``getblocktemplate`` the same way, behind RPC credentials kept in a
cookie file in its data directory (``.cookie``, rewritten at each start).
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "miner.token"
HEADER = "X-Miner-Token"


def write_token(data_dir: str | os.PathLike) -> str:
    """A new token in ``data_dir/miner.token`` (0600, replaced atomically); returns it."""
    token = secrets.token_hex(32)
    path = Path(data_dir) / TOKEN_FILE
    tmp = path.with_name(TOKEN_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison (a timing side channel must not leak the token)."""
    return bool(given) and hmac.compare_digest(expected.encode(), given.strip().encode())
