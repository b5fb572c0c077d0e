"""Names of participants on the explorer's pages: ``node{i}`` for the i-th key of
the genesis participants list (``participants``, else ``allow_list``: the list a
``demo`` network is written with, in node order), ``"(this node)"`` after the
node's own key, and an address prefix for any other sender.

One helper for every page (the index imports :func:`name_of` too), computed
from the genesis config alone: a table per config, built once.
"""
from __future__ import annotations

import re
from typing import Any

from learningchain.core.crypto import InvalidKey, address, check_public_key
from learningchain.core.encoding import is_hex

#: hex characters of an address shown for a sender outside the genesis list.
SHORT = 12
_NAME = re.compile(r"node([0-9]{1,6})")


def roster(config: Any) -> tuple[str, ...]:
    """The genesis list of public keys, in order (:attr:`NetworkConfig.roster`:
    ``participants``, else ``allow_list``, else none), the order that also seeds
    a node's local-only baseline."""
    return config.roster


class _Table:
    def __init__(self, config: Any):
        self.keys = roster(config)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.by_address = {address(k): k for k in self.keys}


_tables: dict[int, tuple[Any, _Table]] = {}


def _table(config: Any) -> _Table:
    held = _tables.get(id(config))
    if held is None or held[0] is not config:
        if len(_tables) > 64:  # tests build many configs; a node has one
            _tables.clear()
        held = _tables[id(config)] = (config, _Table(config))
    return held[1]


def pubkey_of(node: Any, who: str) -> str | None:
    """The public key behind ``who`` (a valid public key, an address of a listed or
    own key, or a name like ``node3``), or None when it cannot be known (a 66-hex
    string that is no secp256k1 point is no key). Whether this node knows anything
    of that key is :func:`learningchain.node.web.pages.known_participant`."""
    t = _table(node.config)
    m = _NAME.fullmatch(who)
    if m:
        i = int(m.group(1))
        return t.keys[i] if i < len(t.keys) else None
    if who in t.by_address:
        return t.by_address[who]
    own = getattr(node, "pubkey", None)
    if own and who == address(own):
        return own
    return who if is_hex(who, 33) and _valid_key(who) else None


def _valid_key(hex66: str) -> bool:
    try:
        check_public_key(hex66)
    except InvalidKey:
        return False
    return True


def address_of(who: str) -> str:
    """The address of a public key (66 hex); an address stays as it is."""
    return address(who) if is_hex(who, 33) else who


def name_of(node: Any, who: str | None) -> str:
    """``node3``, ``node3 (this node)``, or the address prefix of a sender
    outside the genesis list (``who``: a public key or an address)."""
    if not who:
        return "-"
    t = _table(node.config)
    key = who if who in t.index else t.by_address.get(who, who)
    own = getattr(node, "pubkey", None)
    mine = own is not None and (key == own or who == getattr(node, "address", None))
    base = f"node{t.index[key]}" if key in t.index else address_of(who)[:SHORT]
    return f"{base} (this node)" if mine else base


def ref_of(node: Any, who: str) -> str:
    """What a participant's URL names: its name when listed, else its address."""
    t = _table(node.config)
    key = who if who in t.index else t.by_address.get(who)
    return f"node{t.index[key]}" if key is not None else address_of(who)


def listed(node: Any) -> list[str]:
    """The genesis list of public keys (see :func:`roster`)."""
    return list(_table(node.config).keys)
