"""Request bodies (:mod:`learningchain.node.web.request_input`) through the API
of a real Node: malformed JSON, NaN, deep nesting, a wrong Content-Type and a
lone surrogate are each a 4xx JSON answer with its reason."""
from __future__ import annotations

import pytest

from tests.node.web.api_client import miner_client, post, started_node
from tests.helpers import KEYS, update_tx


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


@pytest.fixture
def client(node):
    return miner_client(node)


@pytest.mark.parametrize("data", [b"{", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 5000 + b"]" * 5000,
                                  b"\xff\xfe", b"[]", b"null", b'"text"'])
def test_malformed_json_is_400(client, data):
    for path in ("/txs", "/blocks", "/peers", "/mining/submit", "/sync/blocks", "/inv"):
        r = client.post(path, data=data, content_type="application/json")
        assert r.status_code == 400, (path, data[:10], r.status_code)
        assert "error" in r.get_json()


def test_wrong_content_type_is_415(client):
    r = client.post("/txs", data="{}", content_type="text/plain")
    assert r.status_code == 415 and "application/json" in r.get_json()["error"]


def test_a_lone_surrogate_in_a_metric_name_is_a_400_with_its_reason(client):
    doc = update_tx(client.application.config["NODE"].chain, KEYS[0]).to_dict()
    doc["metrics"] = {"\ud800": "0.500000"}  # json.dumps writes it as the escape \ud800
    r = post(client, "/txs", doc)
    assert r.status_code == 400, r.get_data()
    assert r.get_json()["reason"] == "bad-json" and "surrogate" in r.get_json()["error"]
    doc["metrics"] = {"acc": "0.500000\n"}  # re's $ matches before a final newline; fullmatch does not
    r = post(client, "/txs", doc)
    assert r.status_code == 400 and r.get_json()["reason"] == "tx-malformed"
    assert client.get("/status").status_code == 200
