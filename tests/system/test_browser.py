"""The explorer in a real browser: Debian's Chromium, headless, driven by
Playwright, against a live network of three real ``node.py run`` processes
(tests/chromium.py; node 0 mines a block every ~0.2 s and the rounds close as
they go). The URL and DOM hooks checked are the explorer contract of issue 14.

Every page of the explorer: it renders (``main[data-page]``) with the nav and
the search form, logs no console error, requests nothing but the node it came
from, and every link on it resolves. Then what a researcher relies on: block
pages are HTML for Chromium's real Accept header, the index follows new blocks
and rounds without a reload, the chart, the round page's verdicts, and search
by height, hash prefix, tx prefix, node name and round.

One network and one browser for the module (the whole module is one xdist
group: ``make test`` runs ``--dist loadgroup``). A missing Chromium FAILS the
tests with what to install: it is never a skip.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from learningchain.cli.processes import get, wait_for
from tests import chromium

pytestmark = pytest.mark.xdist_group("browser")

DEADLINE = 60.0
#: how soon the index must show a new block or round: it polls about every second
#: (the contract); generous for a loaded CI machine.
LIVE_MS = 10_000
NAV = ["/", "/rounds", "/participants", "/mempool", "/peers", "/model", "/status"]
VERDICTS = {"accepted", "rejected", "not-counted", "open"}
BASELINES = {"centralized", "local-only", "g0"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def evaluated_rounds(url: str) -> list[int]:
    doc = get(url, "/rounds?format=json") or {}
    return [r["round"] for r in doc.get("rounds", []) if r.get("metrics")]


def full_round(url: str, n: int) -> int | None:
    """The first closed round holding an update of each of the ``n`` nodes (round 1
    may close on its timeout without a node that started late)."""
    doc = get(url, "/rounds?format=json") or {}
    return next((r["round"] for r in doc.get("rounds", []) if r["status"] == "closed" and r["updates"] == n),
                None)


def fail_without_chromium() -> None:
    why = chromium.missing()
    if why:
        pytest.fail(why, pytrace=False)  # never a skip: CI must have the browser


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    fail_without_chromium()  # before the network is started for nothing
    with chromium.explorer_network(tmp_path_factory.mktemp("browser-net")) as net:
        hub = net.nodes[0]
        wait_for(lambda: len(evaluated_rounds(hub.url)) >= 2, DEADLINE, "two evaluated rounds", net)
        # kept here: /rounds lists the newest 50 rounds only, and they close several a second
        net.full_round = wait_for(lambda: full_round(hub.url, len(net.nodes)), DEADLINE,
                                  "a round with every node's update", net)
        yield net


@dataclass
class Visit:
    """One page opened in its own tab, with what it did while open."""
    page: object
    response: object
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Browser:
    """The module's Chromium (one fresh profile) pointed at node 0 of the network."""

    def __init__(self, context, net):
        self.context = context
        self.net = net
        self.origin = net.nodes[0].url
        self.checked: dict[str, int] = {}  # link -> status, across the module
        self.session = requests.Session()
        self.session.trust_env = False
        self.accept = ""  # Chromium's Accept header, as seen on its first navigation
        # Nothing may leave the machine: such a request is recorded (by the page's
        # "request" event) and answered here with a failure, never sent.
        context.route(lambda url: not on_machine(url), lambda route: route.abort("blockedbyclient"))

    def visit(self, path: str, wait: str = "load") -> Visit:
        page = self.context.new_page()
        v = Visit(page, None)
        page.on("console", lambda m: m.type == "error" and v.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: v.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: v.requests.append(r.url))
        page.on("requestfailed", lambda r: v.errors.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
                and v.errors.append(f"HTTP {r.status}: {r.url}"))
        v.response = page.goto(self.origin + path, wait_until=wait)
        if not self.accept:
            self.accept = v.response.request.all_headers().get("accept", "")
        return v

    def status_of(self, links: list[str]) -> dict[str, int]:
        """GET each link (as Chromium asks for a page) once per module; status per link."""
        todo = [u for u in dict.fromkeys(links) if u not in self.checked]

        def fetch(u: str) -> tuple[str, int]:
            try:
                return u, self.session.get(u, headers={"Accept": self.accept}, timeout=10).status_code
            except requests.RequestException:
                return u, 0
        with ThreadPoolExecutor(4) as pool:
            self.checked.update(pool.map(fetch, todo))
        return {u: self.checked[u] for u in links}


def on_machine(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and (parts.hostname or "") in LOCAL_HOSTS


@pytest.fixture(scope="module")
def browser(network, tmp_path_factory):
    fail_without_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        context = chromium.launch(p, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield Browser(context, network)
        finally:
            context.close()


@pytest.fixture
def tabs(browser):
    """Pages opened by one test, closed after it."""
    opened: list[Visit] = []

    def visit(path: str, wait: str = "load") -> Visit:
        opened.append(browser.visit(path, wait))
        return opened[-1]
    yield visit
    for v in opened:
        v.page.close()


# --- what every page must do -------------------------------------------------------

def hrefs(page, selector: str = "a[href]") -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.getAttribute('href'))")


def path_of(browser: Browser, href: str) -> str:
    return urlsplit(urljoin(browser.origin + "/", href)).path


def check_common(browser: Browser, v: Visit, kind: str, status: int = 200) -> None:
    page = v.page
    assert v.response is not None and v.response.status == status, (page.url, v.response and v.response.status)
    assert "text/html" in v.response.headers.get("content-type", ""), v.response.headers
    assert v.response.headers.get("content-security-policy", "").startswith("default-src 'self'"), v.response.headers
    if status >= 400:  # the page's own status, as Chromium reports it: expected here
        v.errors[:] = [e for e in v.errors if not (e == f"HTTP {status}: {page.url}" or f"status of {status}" in e)]
    mains = page.query_selector_all("main")
    assert len(mains) == 1, f"{page.url}: {len(mains)} <main> elements, not one"
    main = page.query_selector("main[data-page]")
    assert main is not None, f"{page.url}: no main[data-page]"
    assert main.get_attribute("data-page") == kind, (page.url, main.get_attribute("data-page"))
    assert page.query_selector("nav#nav") is not None, f"{page.url}: no nav#nav"
    nav = {path_of(browser, h) for h in hrefs(page, "nav#nav a[href]")}
    assert set(NAV) <= nav, f"{page.url}: the nav lacks {sorted(set(NAV) - nav)}"
    form = page.query_selector("form#search")
    assert form is not None, f"{page.url}: no form#search"
    assert path_of(browser, form.get_attribute("action") or "") == "/search"
    assert (form.get_attribute("method") or "get").lower() == "get"
    assert form.query_selector('input[name="q"]') is not None
    assert not v.errors, f"{page.url}: {v.errors}"
    strangers = [u for u in v.requests if not (u.startswith(browser.origin + "/")
                                               or urlsplit(u).scheme in ("data", "blob", "about"))]
    assert not strangers, f"{page.url} requested what is not its node's: {strangers}"
    check_links(browser, page)


def check_links(browser: Browser, page) -> None:
    links = []
    for h in hrefs(page):
        if h.startswith(("#", "javascript:", "mailto:")):
            continue
        u = urljoin(page.url, h).split("#")[0]
        assert on_machine(u), f"{page.url} links off the machine: {h}"
        links.append(u)
    bad = {u: s for u, s in browser.status_of(links).items() if not 0 < s < 400}
    assert not bad, f"{page.url}: links that do not resolve (status): {bad}"


# --- the pages --------------------------------------------------------------------

@pytest.fixture(scope="module")
def ids(network):
    """Ids to visit, read from node 0's JSON: the first round with every node's
    update, one of its updates, the block holding it (its hash and the round's
    updates in it), node 1 and its update of that round."""
    hub, node1 = network.nodes[0], network.nodes[1]
    r = network.full_round
    doc = get(hub.url, f"/rounds/{r}?format=json")
    assert doc, f"node 0 answers JSON for /rounds/{r}"
    update = doc["updates"][0]
    block = get(hub.url, f"/blocks/{update['height']}?format=json")
    assert block, f"node 0 answers JSON for /blocks/{update['height']}"
    mine = next(u for u in doc["updates"] if u["sender"] == node1.pubkey)
    return {"round": r, "hash": block["hash"], "height": update["height"], "txid": update["id"],
            "block_txs": [u["id"] for u in doc["updates"] if u["height"] == update["height"]],
            "node1": node1.pubkey, "address1": mine["address"], "txid1": mine["id"]}


PAGES = {  # name: (path, with {hash}, {txid}, ... from ids(), data-page)
    "index": ("/", "index"),
    "block-by-height": ("/blocks/1", "block"),
    "block-by-hash": ("/blocks/{hash}", "block"),
    "block-by-prefix": ("/blocks/{hash:.12}", "block"),
    "tx": ("/txs/{txid}", "tx"),
    "tx-by-prefix": ("/txs/{txid:.12}", "tx"),
    "rounds": ("/rounds", "rounds"),
    "round": ("/rounds/{round}", "round"),
    "participants": ("/participants", "participants"),
    "participant-by-name": ("/participants/node1", "participant"),
    "participant-by-address": ("/participants/{address1}", "participant"),
    "participant-by-pubkey": ("/participants/{node1}", "participant"),
    "model": ("/model", "model"),
    "peers": ("/peers", "peers"),
    "mempool": ("/mempool", "mempool"),
    "status": ("/status", "status"),
    "search-no-match": ("/search?q=no-such-thing", "search"),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_with_nav_and_search_without_errors_or_strangers(name, browser, tabs, ids):
    path, kind = PAGES[name]
    v = tabs(path.format(**ids))
    check_common(browser, v, kind)


ERROR_PAGES = {  # name: (path, status, reason)
    "bad-block-id": ("/blocks/zzzz", 400, "bad-id"),
    "unknown-block": ("/blocks/999999999", 404, None),
    "unknown-round": ("/rounds/999999", 404, None),
    "unknown-route": ("/no/such/page", 404, "unknown-route"),
}


@pytest.mark.parametrize("name", list(ERROR_PAGES))
def test_an_error_is_a_page_with_the_nav_and_json_for_clients(name, browser, tabs):
    """/blocks/zzzz or /rounds/999 showed the browser raw JSON: it is a page now,
    with the same status, the nav and the search form; a client asking JSON (the
    CLI and peers: requests' ``*/*``) still gets ``{"error", "reason"}``."""
    path, status, reason = ERROR_PAGES[name]
    v = tabs(path)
    check_common(browser, v, "error", status)
    shown = v.page.query_selector("#error")
    assert shown is not None and shown.get_attribute("data-status") == str(status)
    assert shown.get_attribute("data-reason") == reason
    doc = browser.session.get(browser.origin + path, timeout=10)
    assert doc.status_code == status and doc.headers["content-type"].startswith("application/json")
    assert doc.json()["error"] in v.page.inner_text("#error") and doc.json().get("reason") == reason
    assert "Accept" in doc.headers.get("vary", "")


def test_a_block_page_is_html_for_chromiums_own_accept_header(browser, tabs, ids):
    v = tabs(f"/blocks/{ids['hash']}")
    sent = v.response.request.all_headers().get("accept", "")
    assert "text/html" in sent and "application/signed-exchange" in sent, sent  # the real header
    assert v.response.headers.get("content-type", "").startswith("text/html")
    assert ids["hash"] in v.page.inner_text("main")
    linked = [path_of(browser, h)[len("/txs/"):] for h in hrefs(v.page, 'main a[href^="/txs/"]')]
    for txid in ids["block_txs"]:  # every id shown is a link to its page (full id or a prefix)
        assert any(len(h) >= 4 and txid.startswith(h) for h in linked), f"tx {txid} of the block is not linked"


def test_a_tx_page_links_its_block_and_its_sender(tabs, ids):
    v = tabs(f"/txs/{ids['txid']}")
    assert ids["txid"] in v.page.inner_text("main")
    assert hrefs(v.page, 'main a[href^="/blocks/"]'), "no link to the tx's block"
    assert hrefs(v.page, 'main a[href^="/participants/"]'), "no link to the tx's sender"


def test_the_index_follows_new_blocks_and_rounds_without_a_reload(network, tabs):
    v = tabs("/")
    page = v.page
    page.evaluate("window.__notReloaded = true")
    shown = int(page.inner_text("#height").strip())
    shown_round = int(page.inner_text("#round").strip())
    hub = network.nodes[0]
    # the node moves on (a block every ~0.2 s) ...
    height = wait_for(lambda: (s := get(hub.url, "/status")) and s["height"] > shown and s["height"],
                      DEADLINE, "a new block", network)
    # ... and the page follows, without a reload: #height, #round, #live and the blocks table
    page.wait_for_function("h => Number(document.querySelector('#height').textContent.trim()) >= h",
                           arg=height, timeout=LIVE_MS)
    page.wait_for_function("r => Number(document.querySelector('#round').textContent.trim()) > r",
                           arg=shown_round, timeout=LIVE_MS)
    page.wait_for_function("h => [...document.querySelectorAll('#blocks tr[data-height]')]"
                           ".some(tr => Number(tr.dataset.height) >= h)", arg=height, timeout=LIVE_MS)
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating itself"
    assert page.inner_text("#live").strip(), "#live does not show when the page last updated"
    for hook in ("#mempool", "#peers", "#rounds tr[data-round]"):
        assert page.query_selector(hook) is not None, f"no {hook} on the index"
    assert not v.errors, v.errors


def test_a_node_that_stalls_shows_in_live_and_the_poll_carries_on(tabs):
    """A node that accepts the poll and never answers hung the page's poll chain
    while #live kept saying "updated": each request gives up after 5 s, #live
    says so, and the poll backs off and resumes once the node answers again."""
    v = tabs("/")
    page = v.page
    page.wait_for_function("() => document.querySelector('#live').dataset.updated", timeout=LIVE_MS)
    held = []
    page.route("**/live", lambda route: held.append(route))  # taken, never answered: the node stalls
    page.wait_for_function("() => document.querySelector('#live').classList.contains('stale')",
                           timeout=5000 + LIVE_MS)
    assert held, "the stalled /live was never asked"
    text = page.inner_text("#live")
    assert "no answer in 5 s" in text and "retrying in" in text and "last update" in text, text
    page.unroute("**/live")
    page.wait_for_function("() => !document.querySelector('#live').classList.contains('stale')",
                           timeout=5000 + LIVE_MS)
    assert "updated" in page.inner_text("#live")
    assert not [e for e in v.errors if e.startswith(("uncaught", "console"))], v.errors


def test_the_index_links_every_block_and_round_it_lists(tabs):
    page = tabs("/").page
    unlinked = page.evaluate("""() => ({
        blocks: [...document.querySelectorAll('#blocks tr[data-height]')].map(tr =>
            [tr.dataset.height, !!tr.querySelector('a[href^="/blocks/"]')]),
        rounds: [...document.querySelectorAll('#rounds tr[data-round]')].map(tr =>
            [tr.dataset.round, !!tr.querySelector(`a[href="/rounds/${tr.dataset.round}"]`)])})""")
    assert unlinked["blocks"] and unlinked["rounds"], unlinked
    for table, rows in unlinked.items():
        assert all(linked for _, linked in rows), f"#{table} rows without their link: {[k for k, ok in rows if not ok]}"


def test_the_index_chart_plots_the_evaluated_rounds_and_follows_them(network, tabs):
    v = tabs("/")
    page = v.page
    chart = page.query_selector("svg#chart")
    assert chart is not None, "no svg#chart"
    plotted = int(chart.get_attribute("data-rounds"))
    assert 2 <= plotted <= get(network.nodes[0].url, "/status")["round"], plotted
    names = [line.get_attribute("data-name") for line in page.query_selector_all("svg#chart .baseline")]
    assert set(names) <= BASELINES, names
    assert "g0" in names, f"no G0 baseline (every learning node measures G0): {names}"
    fixed = page.query_selector("#fixed-axis")
    assert fixed is not None and fixed.get_attribute("type") == "checkbox", "no #fixed-axis checkbox"
    assert fixed.is_checked(), "the fixed [0, 1] axis is not the default"
    assert (chart.get_attribute("data-axis"), chart.get_attribute("data-y-min"), chart.get_attribute("data-y-max")) \
        == ("fixed", "0", "1")
    fixed.click()  # toggles without a reload or an error, and the chart comes back scaled to the data
    assert not fixed.is_checked()
    page.wait_for_function("() => document.querySelector('svg#chart').dataset.axis === 'data'", timeout=LIVE_MS)
    y_min, y_max = (float(page.get_attribute("svg#chart", a)) for a in ("data-y-min", "data-y-max"))
    assert 0 < y_min < y_max < 1.1, (y_min, y_max)  # the rounds' accuracies, not [0, 1]
    fixed.click()
    page.wait_for_function("() => document.querySelector('svg#chart').dataset.axis === 'fixed'", timeout=LIVE_MS)
    fixed.click()
    page.wait_for_function("n => Number(document.querySelector('svg#chart').dataset.rounds) > n",
                           arg=plotted, timeout=LIVE_MS)  # new rounds come in live
    assert not v.errors, v.errors


def test_the_round_page_shows_every_update_with_its_verdict(network, tabs, ids):
    hub = network.nodes[0]
    doc = get(hub.url, f"/rounds/{ids['round']}?format=json")
    v = tabs(f"/rounds/{ids['round']}")
    page = v.page
    rows = page.query_selector_all("table#updates tr[data-tx]")
    assert {r.get_attribute("data-tx") for r in rows} == {u["id"] for u in doc["updates"]}
    names = {n.pubkey: n.name for n in network.nodes}
    for row in rows:
        txid = row.get_attribute("data-tx")
        update = next(u for u in doc["updates"] if u["id"] == txid)
        cell = {c: row.query_selector(f".{c}") for c in ("verdict", "reason", "sender", "samples", "distance")}
        assert all(cell.values()), f"row {txid[:12]} lacks {[c for c, e in cell.items() if e is None]}"
        verdict = cell["verdict"].inner_text().strip()
        assert verdict in VERDICTS, verdict
        want = ("accepted" if txid in doc["accepted"] else "rejected" if txid in doc["rejected"]
                else "not-counted")
        assert verdict == want, (txid[:12], verdict, want)
        if verdict == "rejected":
            assert cell["reason"].inner_text().strip(), f"rejected {txid[:12]} without a reason"
        assert cell["sender"].query_selector('a[href^="/participants/"]') is not None
        assert names[update["sender"]] in cell["sender"].inner_text(), cell["sender"].inner_text()
        assert cell["samples"].inner_text().strip() == str(update["num_samples"])
        distance = cell["distance"].inner_text().strip()
        assert distance == "-" or re.fullmatch(r"[0-9.e+-]+", distance), distance
        assert row.query_selector('a[href^="/txs/"]') is not None, f"row {txid[:12]} does not link its tx"
    rule = page.query_selector("#rule")
    assert rule is not None and "fedavg" in rule.inner_text().lower(), rule and rule.inner_text()
    assert not v.errors, v.errors


def test_the_peers_page_draws_the_network(network, tabs):
    v = tabs("/peers")
    graph = v.page.query_selector("svg#peer-graph")
    assert graph is not None, "no svg#peer-graph"
    peers = len((get(network.nodes[0].url, "/peers") or {}).get("peers", []))
    assert peers >= 2
    assert len(graph.query_selector_all("g.peer")) == peers + 1  # and the node itself


def test_a_participant_page_shows_its_updates_reputation_and_energy(tabs, ids):
    v = tabs(f"/participants/node1?start={ids['round']}")  # its updates from that round on (a page: 20)
    page = v.page
    assert "node1" in page.inner_text("main")
    rows = page.query_selector_all("table#participant-updates tr[data-tx]")
    assert ids["txid1"] in {r.get_attribute("data-tx") for r in rows}, f"node1's round-{ids['round']} update is not listed"
    for hook in ("#reputation", "#energy"):
        assert page.query_selector(hook) is not None, f"no {hook}"
    assert not v.errors, v.errors


def test_the_participants_page_names_every_node(network, tabs):
    text = tabs("/participants").page.inner_text("main")
    assert text.count("(this node)") == 1, "node 0 is not marked (this node) once"
    for n in network.nodes:
        assert n.name in text, f"{n.name} is not listed by name"


def test_a_request_off_the_machine_is_caught_and_never_sent(browser, tabs):
    """The recorder behind "nothing off the machine" sees what a page asks of
    another host, and the route refuses it before it leaves (``.invalid`` never
    resolves anyway)."""
    v = tabs("/status")
    v.page.evaluate("""() => new Promise(done => { const img = new Image();
        img.onerror = img.onload = done; img.src = 'http://off-the-machine.invalid/pixel.png'; })""")
    assert "http://off-the-machine.invalid/pixel.png" in v.requests
    assert any("off-the-machine.invalid" in e and "request failed" in e for e in v.errors), v.errors


def shared_prefix(url: str) -> str | None:
    """A prefix (>= 4 hex, not all digits: that would be a height) that two main-chain
    block hashes share, or None yet."""
    hashes = sorted(b["hash"] for b in (get(url, "/chain?start=0&limit=500") or {}).get("blocks", []))
    for a, b in zip(hashes, hashes[1:]):
        common = len(a) - len(a.lstrip("0123456789"))  # the first letter's index
        if common >= len(a):
            continue
        n = max(4, common + 1)
        if a[:n] == b[:n]:
            return a[:n]
    return None


def test_an_ambiguous_prefix_shows_the_candidates(browser, network, tabs):
    """A prefix that names several blocks: the browser lands on the search page
    listing them. Blocks mined at genesis' target all start with 0000 (about 2^19
    hashes a block), so two soon share a prefix with a letter in it; and
    ``/search?q=0000`` is both block 0's height and a prefix of the others."""
    prefix = wait_for(lambda: shared_prefix(network.nodes[0].url), DEADLINE, "two blocks sharing a prefix",
                      network)
    for path in (f"/blocks/{prefix}", "/search?q=0000"):
        v = tabs(path)
        main = v.page.query_selector("main[data-page]")
        assert main is not None and main.get_attribute("data-page") == "search", (path, v.page.url)
        candidates = {path_of(browser, h) for h in hrefs(v.page, 'main a[href^="/blocks/"]')}
        assert len(candidates) >= 2, (path, candidates)


SEARCHES = {  # name: (query from ids(), path the browser must land on, data-page)
    "height": ("{height}", "/blocks/", "block"),
    "hash-prefix": ("{hash:.12}", "/blocks/", "block"),
    "tx-prefix": ("{txid:.12}", "/txs/", "tx"),
    "node-name": ("node1", "/participants/", "participant"),
    "round": ("r{round}", "/rounds/", "round"),
}


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_from_the_nav_lands_on_the_right_page(name, browser, tabs, ids):
    query, lands, kind = SEARCHES[name]
    query = query.format(**ids)
    v = tabs("/status")
    v.page.fill('form#search input[name="q"]', query)
    with v.page.expect_navigation():
        v.page.press('form#search input[name="q"]', "Enter")
    v.page.wait_for_load_state("load")
    assert urlsplit(v.page.url).path.startswith(lands), (query, v.page.url)
    main = v.page.query_selector("main[data-page]")
    assert main is not None and main.get_attribute("data-page") == kind, (query, v.page.url)
    text = v.page.inner_text("main")
    expected = {"height": ids["hash"], "hash-prefix": ids["hash"], "tx-prefix": ids["txid"],
                "node-name": "node1", "round": str(ids["round"])}[name]
    assert expected in text, (query, expected)
    if name == "round":
        assert urlsplit(v.page.url).path == f"/rounds/{ids['round']}", v.page.url
    assert not v.errors, v.errors
