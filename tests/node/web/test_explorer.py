"""The explorer's round and block views (the index page: test_index_page.py, its chart: test_chart.py)."""


def test_skips_are_marked_in_round_json_and_block_page_under_policy_all(tmp_path):
    """A skip tx is flagged in GET /rounds/<r> (``skipped`` and per-update ``skip``),
    counted in GET /rounds, and marked on the block's HTML page, without any
    selection policy."""
    from learningchain.node.web.api import create_app
    from learningchain.node.service import Node
    from learningchain.ledger.tx import UpdateTx
    from tests.helpers import KEYS, next_block, tiny_config, update_tx

    listed = [k.public_hex for k in KEYS[:4]]  # permissioned: the skip counts toward the quorum
    node = Node(tmp_path / "node", tiny_config(allow_list=listed), quiet=True, port=5998)
    try:
        client = create_app(node).test_client()
        with node.lock:
            chain = node.chain
            skip = UpdateTx.create_skip(KEYS[2], 1, chain.model()[1], 10)
            blk = next_block(chain, [update_tx(chain, KEYS[0]), update_tx(chain, KEYS[1]), skip])
        assert node.submit_block(blk, relay=False) == "connected"
        detail = client.get("/rounds/1").get_json()
        assert detail["status"] == "closed" and detail["skipped"] == [skip.id]
        assert "selected" not in detail
        assert {u["id"]: u["skip"] for u in detail["updates"]} == {t.id: t.is_skip for t in blk.txs}
        overview = client.get("/rounds").get_json()["rounds"][0]
        assert overview["updates"] == 3 and overview["skipped"] == 1
        page = client.get(f"/blocks/{blk.hash}", headers={"Accept": "text/html"}).get_data(as_text=True)
        assert page.count("<b>skip</b>") == 1 and f"{skip.id[:16]}</a></td><td class=\"muted\">skipped" in page
    finally:
        node.stop()


def test_index_shows_a_rejected_update_with_its_reason(tmp_path):
    """A real Node (store, ledger, multi-krum validation) fed through its own
    API: four honest updates and one far-off attacker close round 1; ``GET /``
    lists the attacker's update as rejected, with the rule's reason."""
    import html
    import json

    from learningchain.node.web.api import create_app
    from learningchain.node.service import Node
    from miner.pow import search
    from tests.helpers import KEYS, tiny_config, update_tx

    config = tiny_config(aggregation={"rule": "multi-krum", "params": {"f": 1, "m": 0}}, quorum=5)
    node = Node(tmp_path / "node", config, quiet=True, port=5998)
    try:
        app = create_app(node)
        client = app.test_client()
        client.environ_base["HTTP_X_MINER_TOKEN"] = app.config["MINER_TOKEN"]
        honest = [update_tx(node.chain, k, shift=0.01 * (i + 1)) for i, k in enumerate(KEYS[:4])]
        attacker = update_tx(node.chain, KEYS[4], shift=50.0)
        for tx in honest + [attacker]:
            resp = client.post("/txs", data=json.dumps(tx.to_dict()), content_type="application/json")
            assert resp.status_code == 202, resp.get_json()
        t = client.get("/mining/template").get_json()
        nonce, _ = search(bytes.fromhex(t["prefix"]), int(t["target"], 16), 0, 1 << 32)
        resp = client.post("/mining/submit", data=json.dumps({"template_id": t["template_id"], "nonce": nonce}),
                           content_type="application/json")
        assert resp.status_code == 202, resp.get_json()
        reason = client.get("/rounds/1").get_json()["rejected"][attacker.id]
        assert reason.startswith("multi-krum:")
        page = html.unescape(client.get("/").get_data(as_text=True))
    finally:
        node.stop()
    rounds_table = page[page.index('<table id="rounds"'):]
    row = rounds_table[rounds_table.index('<tr data-round="1">'):].split("</tr>", 1)[0]
    assert "closed" in row
    assert f'<a href="/txs/{attacker.id}"><code title="{attacker.id}">{attacker.id[:10]}</code></a> {reason}' in row
    for tx in honest:  # listed as accepted, not under the reasons
        assert f'<a href="/txs/{tx.id}"><code title="{tx.id}">' in row.split('class="bad reasons"')[0]


def test_index_shows_the_nodes_dp_mode_epsilon_and_delta(tmp_path):
    from learningchain.node.service import Node
    from learningchain.node.threads import participate_once
    from learningchain.node.web.api import create_app
    from tests.helpers import tiny_config
    from tests.node.test_service import write_partition

    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(), dataset_path=data, dp_mode="sample", dp_epsilon=4.0,
                dp_rounds=10, quiet=True, port=5993)
    plain = Node(tmp_path / "p", tiny_config(), quiet=True, port=5992)
    try:
        participate_once(node)
        page = create_app(node).test_client().get("/").get_data(as_text=True)
        eps = node.privacy_report()["epsilon"]
        assert 0 < eps < 4.0 and f"privacy <b>sample</b> · ε <b>{eps:.3f}</b> of 4 · δ <b>1e-05</b>" in page
        assert "privacy <b>off</b>" in create_app(plain).test_client().get("/").get_data(as_text=True)
    finally:
        node.stop()
        plain.stop()
