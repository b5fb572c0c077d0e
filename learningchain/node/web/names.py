"""Participants by name (a minimal version by explorer-live; explorer-pages owns
this module and may replace it, keeping :func:`name_of`'s signature):
``node{i}`` is the key at index i of the genesis participants list (the
allow-list, else the participants with energy profiles), the node's own key
gets ``(this node)``, anyone else is shown by an address prefix."""
from __future__ import annotations

from learningchain.core.crypto import address

#: characters of an address shown for a key that is not in the genesis list.
PREFIX = 12


def name_of(node, pubkey_or_address: str) -> str:
    """``node3``, ``node3 (this node)``, or the first characters of the address."""
    listed = node.config.allowed or ()
    own = pubkey_or_address in (node.pubkey, node.address)
    for i, key in enumerate(listed):
        if pubkey_or_address == key or pubkey_or_address == address(key):
            return f"node{i} (this node)" if own else f"node{i}"
    if own:
        return "(this node)"
    text = pubkey_or_address if len(pubkey_or_address) <= 42 else address(pubkey_or_address)
    return text[:PREFIX]
