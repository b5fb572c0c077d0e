"""The node's journal of its secure-aggregation txs and reveals
(``<data-dir>/secagg_reveals.json``), so a restart keeps two promises:

* never two txs of one type for one round (a second setup would compete with
  the first in peers' mempools; whichever is mined, a member holding the
  other's secrets would mask its input with keys nobody else uses);
* the reveal rule (docs/protocol.md section 14.7): never a self share *and* a
  mask share or seed of one member in one round, on any branch. What
  :class:`~learningchain.node.secagg_client.SecAggClient` revealed is its
  ``journal``; this file keeps it across restarts.

Each write replaces the whole file atomically (a temporary file, fsync,
rename, fsync of the directory) *before* the tx it records is sent. A crash
mid-write leaves the old file whole and a torn temporary file, which the next
start removes: that tx was never sent. A main file that does not parse is
refused with a one-line error (it guards the members' privacy: repair or move
it away, never guess).

Format: ``{"version": 1, "rounds": {"<r>": {"sent": {"sa-setup": id, ...},
"reveals": {member: "self" | "mask"}}}}``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from learningchain.core.errors import ConfigError
from learningchain.ledger.secagg_tx import SA_TYPES
from learningchain.node.releases import _fsync_dir

JOURNAL_FILE = "secagg_reveals.json"
KINDS = ("self", "mask")


class SecAggJournal:
    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / JOURNAL_FILE
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        #: round -> tx type -> id of the tx we signed (and perhaps sent)
        self.sent: dict[int, dict[str, str]] = {}
        #: round -> member -> "self" | "mask" (SecAggClient.journal: the same dict)
        self.reveals: dict[int, dict[str, str]] = {}
        self._load()

    def _load(self) -> None:
        if self.tmp.exists():  # a write torn by a crash: its tx never left the node
            self.tmp.unlink()
        if not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text())
            if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("rounds"), dict):
                raise ValueError("not a version-1 journal")
            for key, entry in doc["rounds"].items():
                r = int(key)
                sent, reveals = entry["sent"], entry["reveals"]
                if not (isinstance(sent, dict) and set(sent) <= set(SA_TYPES)
                        and all(isinstance(v, str) for v in sent.values())):
                    raise ValueError(f"round {key}: bad 'sent'")
                if not (isinstance(reveals, dict) and all(isinstance(k, str) and v in KINDS
                                                          for k, v in reveals.items())):
                    raise ValueError(f"round {key}: bad 'reveals'")
                self.sent[r], self.reveals[r] = dict(sent), dict(reveals)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is corrupt ({type(exc).__name__}: {exc}); this journal keeps the "
                              f"secure-aggregation reveal rule across restarts: repair or move it away") from None

    def was_sent(self, round: int, kind: str) -> str | None:
        return self.sent.get(round, {}).get(kind)

    def record(self, round: int, kind: str, txid: str) -> None:
        """Note that we send ``kind`` for ``round`` (with the reveals the client made
        so far) and flush it to disk; call before the tx leaves the node."""
        self.sent.setdefault(round, {})[kind] = txid
        self.save()

    def save(self) -> None:
        rounds = {str(r): {"sent": self.sent.get(r, {}), "reveals": self.reveals.get(r, {})}
                  for r in sorted(set(self.sent) | set(self.reveals))}
        raw = json.dumps({"version": 1, "rounds": rounds}, sort_keys=True).encode()
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
