"""The node's journal of the updates it has released, so that differential
privacy survives a restart.

Why a journal and not only the chain: the accountant (privacy.py) must count
every noisy update that ever left the node, and a node must never publish two
noisy copies of the same clipped delta. Training is deterministic from public
facts (seed, address, round), so after a restart the node would compute the
same clipped delta again; with fresh noise, the average of the two releases
has half the noise variance, and the accountant would start again from 0.
The chain alone cannot prevent this: an update that was gossiped but not yet
mined is only in the (memory-only) mempools. So each update is appended here
and flushed to disk *before* it is submitted or gossiped (write-ahead), and
on start the node:

* counts its releases as the union of the txs in this journal and its own txs
  on the main chain (:func:`released_ids`; data dirs written before the
  journal existed still count what is on chain);
* for the open round, sends the journalled tx again, byte for byte, instead
  of training a new one (:meth:`ReleaseLog.find`): resending the same noisy
  update reveals nothing new.

One JSON line per tx (the wire form of :meth:`UpdateTx.to_dict`). A torn last
line (a crash while writing it) is ignored and cut off the file on start: that
tx was never sent, and the next tx must not be appended to the fragment.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from learningchain.core.encoding import EncodingError
from learningchain.core.errors import ConfigError, ValidationError
from learningchain.ledger.tx import UpdateTx

RELEASES_FILE = "released.jsonl"


class ReleaseLog:
    """Append-only record of the update txs this node has signed for release.

    Only what the node needs stays in memory: the ids (the accountant counts
    them) and, per (round, base model), the file offset of the last tx released
    for it; a tx body (weights included) is read back from disk only by
    :meth:`find`, i.e. for the rare resend after a restart.
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / RELEASES_FILE
        self._ids: set[str] = set()
        self._count = 0
        self._offsets: dict[tuple[int, str], int] = {}
        self._end = 0  # offset just after the last whole, valid line: the only place to append
        self._load()

    def _load(self) -> None:
        """Index the journal line by line; cut a torn last line off the file.

        The cut matters, not only skipping it: the next :meth:`record` appends,
        and after a fragment with no newline the new tx would be glued onto it,
        so a later start would drop that tx (an uncounted release, perhaps
        retrained with fresh noise) or refuse the journal outright."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            for i, raw in enumerate(fh, 1):
                offset, last = self._end, self._end + len(raw) >= size
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("no newline at its end")
                    tx = UpdateTx.parse(json.loads(raw))
                except (ValueError, ValidationError, EncodingError) as exc:
                    if last:  # torn by a crash before the tx was sent: it never left
                        self._truncate(offset)
                        return
                    raise ConfigError(f"{self.path}: line {i} is not an update tx ({exc}); this journal "
                                      f"counts the node's private releases, repair or move it away") from None
                self._index(tx, offset)
                self._end = offset + len(raw)

    def _truncate(self, end: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())

    def _index(self, tx: UpdateTx, offset: int) -> None:
        self._ids.add(tx.id)
        self._count += 1
        self._offsets[(tx.round, tx.base)] = offset

    def __len__(self) -> int:
        return self._count

    @property
    def ids(self) -> set[str]:
        return set(self._ids)

    def record(self, tx: UpdateTx) -> None:
        """Append ``tx`` and flush it to disk; call before the tx leaves the node.

        Writes at the end of the last whole line, cutting off whatever a failed
        earlier write (disk full, I/O error) left behind, so a tx is never glued
        onto a fragment."""
        line = tx.serialize() + b"\n"
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size < self._end:
                raise ConfigError(f"{self.path} shrank while the node ran ({size} < {self._end} bytes); "
                                  f"this journal counts the node's private releases, restore it")
            if size > self._end:
                os.ftruncate(fd, self._end)
            os.lseek(fd, self._end, os.SEEK_SET)
            view = memoryview(line)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new directory entry must survive a crash too
            _fsync_dir(self.path.parent)
        self._index(tx, self._end)
        self._end += len(line)

    def find(self, round: int, base: str) -> UpdateTx | None:
        """The tx released for ``round`` on base model ``base``, if any (the last one)."""
        offset = self._offsets.get((round, base))
        if offset is None:
            return None
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            raw = fh.readline()
        try:
            tx = UpdateTx.parse(json.loads(raw))
        except (ValueError, ValidationError, EncodingError) as exc:
            raise ConfigError(f"{self.path}: the tx at byte {offset} changed while the node ran ({exc}); "
                              f"this journal counts the node's private releases, restore it") from None
        if tx.id not in self._ids or (tx.round, tx.base) != (round, base):
            raise ConfigError(f"{self.path}: the tx at byte {offset} changed while the node ran; "
                              f"this journal counts the node's private releases, restore it")
        return tx


def _fsync_dir(directory: Path) -> None:
    """Persist a directory entry (POSIX: fsync on the directory; not possible on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def released_ids(log: ReleaseLog, own_txs_on_chain: Iterable[UpdateTx]) -> set[str]:
    """Every update this node has released: journal and main chain together."""
    return log.ids | {t.id for t in own_txs_on_chain}
