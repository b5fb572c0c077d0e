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
line (a crash while writing it) is ignored: that tx was never sent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from learningchain.encoding import EncodingError
from learningchain.errors import ConfigError, ValidationError
from learningchain.tx import UpdateTx

RELEASES_FILE = "released.jsonl"


class ReleaseLog:
    """Append-only record of the update txs this node has signed for release."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / RELEASES_FILE
        self._txs: list[UpdateTx] = list(self._load())

    def _load(self) -> Iterable[UpdateTx]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        txs = []
        for i, line in enumerate(lines, 1):
            try:
                txs.append(UpdateTx.parse(json.loads(line)))
            except (ValueError, ValidationError, EncodingError) as exc:
                if i == len(lines):  # torn by a crash before the tx was sent: it never left
                    break
                raise ConfigError(f"{self.path}: line {i} is not an update tx ({exc}); this journal "
                                  f"counts the node's private releases, repair or move it away") from None
        return txs

    def __len__(self) -> int:
        return len(self._txs)

    @property
    def ids(self) -> set[str]:
        return {t.id for t in self._txs}

    def record(self, tx: UpdateTx) -> None:
        """Append ``tx`` and flush it to disk; call before the tx leaves the node."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(tx.serialize().decode("utf-8") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._txs.append(tx)

    def find(self, round: int, base: str) -> UpdateTx | None:
        """The tx released for ``round`` on base model ``base``, if any (the last one)."""
        for tx in reversed(self._txs):
            if tx.round == round and tx.base == base:
                return tx
        return None


def released_ids(log: ReleaseLog, own_txs_on_chain: Iterable[UpdateTx]) -> set[str]:
    """Every update this node has released: journal and main chain together."""
    return log.ids | {t.id for t in own_txs_on_chain}
