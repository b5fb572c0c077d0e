"""The one place a transaction is parsed from the wire: by its ``type``, an
update or skip (:class:`~learningchain.ledger.tx.UpdateTx`) or a
secure-aggregation tx (:class:`~learningchain.ledger.secagg_tx.SecAggTx`)."""
from __future__ import annotations

from typing import Any, Union

from learningchain.ledger.secagg_tx import SA_TYPES, SecAggTx
from learningchain.ledger.tx import UpdateTx

Tx = Union[UpdateTx, SecAggTx]


def parse_tx(doc: Any) -> Tx:
    """The tx in a decoded JSON document; ValidationError (tx-malformed, ...) otherwise.
    Unknown types are refused by UpdateTx.parse's message, as before."""
    if isinstance(doc, dict) and doc.get("type") in SA_TYPES:
        return SecAggTx.parse(doc)
    return UpdateTx.parse(doc)


def is_secagg(tx: Any) -> bool:
    return isinstance(tx, SecAggTx)
