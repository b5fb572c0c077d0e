"""Five real hosts on one machine (network namespaces, tests/netns_hosts.py), one
``node.py run`` per host bound to its own address and serving HTTPS (``node.py
tls init`` certificates for the host addresses), links shaped with ``tc tbf``
and given 50 ms one-way delay and 1 % segment loss by the hosts' link proxies:
the network converges round after round; the trunk between hosts 0-2 and
hosts 3-4 is cut for rounds and healed, and the majority's accepted updates all
end up in every node's chain; a host goes down (its node killed, its cable out)
and comes back, and its node catches up.

One network for the module (one xdist group: it starts once, about 10 s),
the tests in order. Needs root and iproute2 (``.ci/run`` installs iproute2): a
failure with what is missing, never a skip. Timing figures (time to converge
after healing, round time against loopback) are in bench/multihost.py; the
deadlines here are generous.
"""
from __future__ import annotations

import time

import pytest

from learningchain.cli.demo_rounds import check_agreement
from learningchain.cli.processes import Network, get, wait_for, wait_ready
from tests.netns_hosts import Hosts, available, network_files, start_nodes, tls_init
from tests.netutil import main_chain_txs, status, verify

pytestmark = pytest.mark.xdist_group("netns")

N, MINORITY = 5, 2
DEADLINE = 60.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    why = available()
    if why:
        pytest.fail(f"{why}: run the suite as root with iproute2 installed (.ci/run does)", pytrace=False)
    out = tmp_path_factory.mktemp("multihost")
    # quorum 3 of 5: the majority side of a partition closes rounds without waiting for a timeout
    files, genesis, config = network_files(out, N, quorum=3)
    with Hosts(N, out, minority=MINORITY, delay_ms=50, loss=0.01, rate="20mbit") as hosts, Network(out) as net:
        # HTTPS between the hosts (node.py tls init: certificates for the host addresses, bound to the chain keys)
        tls_dir = tls_init(hosts, out)
        start_nodes(net, hosts, files, genesis, miners=2, tls_dir=tls_dir)  # hosts 0 and 1 mine: the majority side
        yield hosts, net, config
        net.stop_all()


def round_of(node) -> int:
    return int(status(node).get("round", 0))


def wait_rounds(net, node, k: int) -> int:
    """Until ``node`` has closed ``k`` more rounds; the last closed round."""
    target = round_of(node) + k
    wait_for(lambda: round_of(node) >= target, DEADLINE, f"{node.name} to reach round {target}", net)
    return target - 1


def hold_chain_of(nodes, height: int):
    """Every node holds node 0's block at ``height`` (blocks keep coming every ~0.2 s, so
    one tip on all five at one moment is a matter of luck; a common block is not)."""
    want = (get(nodes[0].url, f"/blocks/{height}") or {}).get("hash")
    return want and all((get(n.url, f"/blocks/{height}") or {}).get("hash") == want for n in nodes[1:])


def test_hosts_converge_round_after_round(mesh):
    hosts, net, _ = mesh
    nodes = net.nodes
    for i, n in enumerate(nodes):  # each node serves on its own host's address
        assert n.url == hosts.url(i, "https") and status(n)["pubkey"] == n.pubkey
    for _ in range(3):
        r = wait_rounds(net, nodes[0], 1)
        digest, _tips = check_agreement(net, r, timeout=DEADLINE)
        assert digest and all(get(n.url, f"/rounds/{r}")["model_digest"] == digest for n in nodes)
    # every node found every other by its host address (node 0 learns them from their announces, which
    # come from the announcing host's own address), and their traffic went through the link proxies
    for n in nodes:
        wait_for(lambda n=n: {p["url"] for p in get(n.url, "/peers")["peers"]}
                 == {hosts.url(i, "https") for i in range(N)} - {n.url}, DEADLINE, f"{n.name} to know every host", net)
    wait_for(lambda: hosts.proxy_stats().get("bytes", 0) > 0, DEADLINE, "the proxies' counters", net)
    stats = hosts.proxy_stats()
    assert stats["connections"] > 0 and stats["chunks"] > 0


def test_partition_two_from_three_heals_and_loses_no_accepted_update(mesh):
    hosts, net, config = mesh
    nodes = net.nodes
    majority, minority = nodes[:N - MINORITY], nodes[N - MINORITY:]
    height = int(status(nodes[0])["height"])
    wait_for(lambda: hold_chain_of(nodes, height), DEADLINE, "the network to converge before the cut", net)
    hosts.cut()
    try:
        cut_round = round_of(nodes[0])
        last = wait_rounds(net, nodes[0], 3)  # the majority (quorum 3) goes on alone
        height = int(status(nodes[0])["height"])
        wait_for(lambda: hold_chain_of(majority, height), DEADLINE, "the majority to agree", net)
        # the minority (no miner) is stuck where the cut left it
        assert all(round_of(n) <= cut_round + 1 for n in minority)
        accepted = {}
        for r in range(cut_round, last + 1):
            doc = get(nodes[0].url, f"/rounds/{r}") or {}
            if doc.get("status") == "closed":
                accepted[r] = doc.get("accepted", [])
        assert sum(len(v) for v in accepted.values()) >= config.quorum * 2, accepted
        on_majority = main_chain_txs(nodes[0].url)
    finally:
        hosts.heal()
    t0 = time.monotonic()
    height = int(status(nodes[0])["height"])
    wait_for(lambda: hold_chain_of(nodes, height), DEADLINE, "the minority to sync the majority's chain", net)
    print(f"the minority holds the majority's chain {time.monotonic() - t0:.1f} s after healing")
    ids = {i for ids in accepted.values() for i in ids}
    assert ids <= set(on_majority)
    # every update the majority accepted ends up on every node's main chain (a block of the
    # majority's tip may still be replaced by a sibling: its txs then come back in another)
    wait_for(lambda: all(set(on_majority) <= set(main_chain_txs(n.url)) for n in nodes), DEADLINE,
             "the majority's updates on every chain", net)
    assert all(round_of(n) > last for n in minority)


def test_a_host_goes_down_comes_back_and_catches_up(mesh):
    hosts, net, _ = mesh
    nodes = net.nodes
    victim = nodes[-1]
    i = victim.index
    net.kill(victim)  # the host crashes: its node and its link proxy die, its cable is out
    hosts.stop_proxy(i)
    hosts.unplug(i)
    proc = verify(victim.data_dir)
    assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stdout + proc.stderr
    down_height = int(status(nodes[0])["height"])
    wait_rounds(net, nodes[0], 2)  # the others close rounds without it
    hosts.plug(i)
    hosts.start_proxy(i)
    net.launch(victim)
    wait_ready(net, [victim], timeout=DEADLINE)
    height = int(status(nodes[0])["height"])
    wait_for(lambda: hold_chain_of(nodes, height), DEADLINE, "the restarted host to catch up", net)
    assert height > down_height
    r = wait_rounds(net, nodes[0], 1)  # and it follows the next round with the others
    check_agreement(net, r, timeout=DEADLINE)
    for n in nodes:
        assert "Traceback" not in n.log_path.read_text()
