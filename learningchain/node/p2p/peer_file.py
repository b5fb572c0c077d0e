"""The peers a node knew, kept across restarts in ``<data-dir>/peers.json``.

Without it a node restarted with only a dead bootstrap peer (``--peers``) stays
isolated for good: every peer it had learned was in memory only (issue 10,
item 14). The file is only a hint: on start each URL is *offered* again, so it
joins the table only after its handshake (``/tip`` with our genesis), exactly
like a URL a peer told us about. A bad or foreign file is ignored with one line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

FILE_NAME = "peers.json"
#: URLs kept at most (the table holds fewer: peer_table.MAX_PEERS).
MAX_SAVED = 256


def load_peers(data_dir: str | os.PathLike) -> tuple[list[str], str | None]:
    """(URLs, None), or ([], why) when the file is missing or unreadable."""
    path = Path(data_dir) / FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], None
    except (OSError, ValueError) as exc:
        return [], f"{path}: {exc}"
    if not isinstance(doc, dict) or not isinstance(doc.get("peers"), list):
        return [], f"{path}: expected {{\"peers\": [url, ...]}}"
    return [u for u in doc["peers"][:MAX_SAVED] if isinstance(u, str)], None


def save_peers(data_dir: str | os.PathLike, urls: Iterable[str]) -> None:
    """Write the URLs atomically (a temporary file renamed over the old one)."""
    path = Path(data_dir) / FILE_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"peers": sorted(set(urls))[:MAX_SAVED]}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
