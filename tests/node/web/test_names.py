"""Participants by name: their index in the genesis list, the node's own key marked."""
from types import SimpleNamespace

from learningchain.core.crypto import address
from learningchain.node.web.names import name_of
from tests.helpers import KEYS, tiny_config

LISTED = [k.public_hex for k in KEYS[:3]]


def node_with(key, cfg):
    return SimpleNamespace(config=cfg, pubkey=key.public_hex, address=key.address)


def test_listed_keys_are_named_by_their_index_and_the_own_key_is_marked():
    n = node_with(KEYS[1], tiny_config(allow_list=LISTED))
    assert name_of(n, LISTED[0]) == "node0" and name_of(n, address(LISTED[2])) == "node2"
    assert name_of(n, LISTED[1]) == "node1 (this node)" == name_of(n, KEYS[1].address)


def test_others_are_an_address_prefix():
    n = node_with(KEYS[5], tiny_config())  # an open network: no list
    stranger = KEYS[4].public_hex
    assert name_of(n, stranger) == address(stranger)[:12] == name_of(n, address(stranger))
    assert name_of(n, KEYS[5].public_hex) == "(this node)"
