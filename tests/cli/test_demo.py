"""``node.py demo`` as a user runs it: a subprocess that starts real node
processes. A short run writes a results.json the results checker accepts; a
node killed with SIGKILL, Ctrl-C (twice) or SIGTERM/SIGHUP to the demo all end
with every node process gone, checked by pid. Every wait polls with a deadline.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.cli.demo import stop_on_term_and_hup
from learningchain.cli.processes import Network, Stopped, deferred_signals, wait_for
from learningchain.learning.data import load_partition
from learningchain.node.baselines_file import dataset_digest, read_baselines
from learningchain.sim.results import read_results
from tests.helpers import bad_data_dir, write_data_dir

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def start_demo(out: Path, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    """The demo in the background, its stdout and stderr in files we can poll."""
    stdout, stderr = out / "demo.out", out / "demo.err"
    with open(stdout, "wb") as o, open(stderr, "wb") as e:
        proc = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "demo", "--out", str(out / "run"),
                                 *args], cwd=str(ROOT), stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    return proc, stdout, stderr


def node_pids(out: Path) -> dict[str, int]:
    """``node{i}`` -> pid of every live ``node.py run`` whose data dir is under ``out``."""
    marker = str(out / "run" / "nodes") + os.sep
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not alive(int(entry)):
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "run" in argv and "--data-dir" in argv:
            data_dir = argv[argv.index("--data-dir") + 1]
            if data_dir.startswith(marker):
                found[Path(data_dir).name] = int(entry)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+Z", status, re.M)


def running_network(proc, stdout: Path, out: Path, n: int) -> dict[str, int]:
    """Once the demo printed its node line: the pids of its n nodes."""
    wait_for(lambda: "nodes: " in stdout.read_text() or proc.poll() is not None, DEADLINE, "the demo's node line")
    assert proc.poll() is None, (out / "demo.err").read_text()
    return wait_for(lambda: (lambda p: p if len(p) == n else None)(node_pids(out)), 10, f"{n} node pids")


def assert_all_gone(pids: dict[str, int], timeout: float = 20.0) -> None:
    wait_for(lambda: not any(alive(p) for p in pids.values()), timeout,
         f"node processes {sorted(pids.values())} to exit")


def finish(proc: subprocess.Popen, timeout: float = DEADLINE) -> int:
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_short_demo_writes_checked_results_and_plots(tmp_path):
    proc, stdout, stderr = start_demo(tmp_path, "--nodes", "3", "--rounds", "2")
    assert finish(proc, 120) == 0, stderr.read_text()
    text = stdout.read_text()
    assert re.search(r"^round\s+height\s+accepted\s+rejected\s+metric", text, re.M)
    for r in (1, 2):
        assert re.search(rf"^\s+{r}\s+\d+\s+3\s+0\s+accuracy 0\.\d{{4}}", text, re.M), text
    assert "agreement: all 3 nodes hold model" in text
    results = read_results(tmp_path / "run")  # raises unless the schema checker accepts it
    assert [e["round"] for e in results["rounds"]] == [1, 2]
    # Round 1 closes only once every node trained it, so its train time is > 0; a later
    # round's may be 0: its training can land before the previous round is evaluated.
    assert results["rounds"][0]["timing"]["train"] > 0
    for e in results["rounds"]:
        # the simulator's meaning: bytes of the round's update txs, network traffic apart
        assert 3 * 9640 < e["bytes"] < 3 * 1.5 * 9640 and e["bytes_per_update"] * 3 == pytest.approx(e["bytes"])
        assert e["traffic_bytes"] > 0  # all the nodes sent, under its own key
        assert e["skipped"] == 0 and e["timing"]["round"] > 0 and e["timing"]["train"] >= 0
        energy = e["energy"]
        assert set(energy["per_node"]) == {"node0", "node1", "node2"}
        assert energy["total_j"] == pytest.approx(sum(energy["per_node"].values()), rel=1e-6)
        assert energy["train_j"] > 0
    prov = results["provenance"]  # learningchain/sim/provenance.py
    assert prov["config"]["flags"]["nodes"] == 3 and prov["config"]["flags"]["block_ms"] is None
    assert prov["config"]["network"]["quorum"] == 3 and prov["seeds"] == {"model": 0, "partitions": 0}
    assert "--rounds" in prov["command"] and prov["packages"]["numpy"]
    for plot in ("metric.png", "updates.png"):
        assert (tmp_path / "run" / plot).stat().st_size > 1000
    assert node_pids(tmp_path) == {}
    # every node's explorer gets the baselines results.json reports, on its own held-out set
    test_set = load_partition(tmp_path / "run" / "data" / "digits-3-iid" / "test.npz")
    for i in range(3):
        doc, note = read_baselines(tmp_path / "run" / "nodes" / f"node{i}", dataset_digest(*test_set))
        assert doc is not None, note
        assert doc["centralized"] == results["baselines"]["centralized"] and doc["g0"] == results["initial"]
        assert doc["local_only"] == results["baselines"]["local_only"]["per_node"][i]
        assert doc["rounds"] == 2 and doc["epochs"] == 2 * 10 and "node.py demo" in doc["source"]


def test_a_node_killed_with_sigkill_stops_the_demo_and_every_node(tmp_path):
    proc, stdout, stderr = start_demo(tmp_path, "--nodes", "2", "--rounds", "50")
    pids = running_network(proc, stdout, tmp_path, 2)
    os.kill(pids["node1"], signal.SIGKILL)
    assert finish(proc) == 1
    err = stderr.read_text()
    lines = [line for line in err.splitlines() if "node1" in line and "SIGKILL" in line]
    assert len(lines) == 1 and lines[0].startswith("node.py demo: node1 (http://127.0.0.1:"), err
    assert "its last lines:" in lines[0] and "disagree" not in err and "Traceback" not in err
    tail = err.split("its last lines:", 1)[1].strip().splitlines()
    log = (tmp_path / "run" / "node1.log").read_text().splitlines()
    assert tail and [t.strip() for t in tail] == [x.strip() for x in log[-len(tail):]]
    assert_all_gone(pids)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_demo_stops_every_node(tmp_path, sig):
    proc, stdout, stderr = start_demo(tmp_path, "--nodes", "2", "--rounds", "50")
    pids = running_network(proc, stdout, tmp_path, 2)
    proc.send_signal(sig)
    if sig == signal.SIGINT:  # an impatient second Ctrl-C while the nodes stop must not orphan them
        wait_for(lambda: "stopping the nodes" in stderr.read_text() or proc.poll() is not None, 10,
             "the demo to start stopping")
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.send_signal(signal.SIGTERM)  # and a kill on top: still noted, not obeyed
    assert finish(proc, 30) == 128 + sig
    assert f"interrupted ({sig.name}): stopping the nodes" in stderr.read_text()
    assert "Traceback" not in stderr.read_text()
    assert_all_gone(pids)


def test_sighup_to_the_demo_stops_it_like_sigterm():
    """The terminal closing (SIGHUP) takes the same path as SIGTERM above."""
    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(Stopped) as caught, stop_on_term_and_hup():
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: False, 5, "SIGHUP to arrive")
    assert caught.value.signum == signal.SIGHUP
    assert isinstance(caught.value, KeyboardInterrupt)  # so node.py's Ctrl-C handling applies
    assert signal.getsignal(signal.SIGHUP) is before


def test_a_noted_signal_stops_the_poll_loops_at_a_safe_point(tmp_path, capsys):
    """The demo's handler only notes a signal (no exception at an arbitrary point);
    Network.check_alive, called by every poll loop, turns it into Stopped."""
    before = signal.getsignal(signal.SIGINT)
    with deferred_signals(message=None) as requested:
        net = Network(tmp_path, signals=requested)
        net.check_alive()  # nothing noted yet
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: requested, 5, "the signal to be noted")
        with pytest.raises(Stopped) as caught:
            net.check_alive()
        os.kill(os.getpid(), signal.SIGINT)  # a second one is noted too, not obeyed
        wait_for(lambda: len(requested) == 2, 5, "the second signal to be noted")
    assert caught.value.signum == signal.SIGINT and signal.getsignal(signal.SIGINT) is before
    assert capsys.readouterr().err == ""  # the demo says it once, when it acts on the first


def test_stopping_the_nodes_cannot_be_interrupted():
    before = signal.getsignal(signal.SIGINT)
    with deferred_signals() as received:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt in here
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: len(received) == 2, 5, "the signals to be recorded")
    assert received == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is before


def _no_test(d):
    write_data_dir(d, sizes=(20, 20), test=None)


@pytest.mark.parametrize("make, flags, says", [
    (lambda d: None, [], "no such directory"),
    (lambda d: d.mkdir(), [], "no node0.npz"),
    (lambda d: bad_data_dir(d, "mismatched"), [], "node1.npz has 5 features per sample, node0.npz has 6"),
    (lambda d: bad_data_dir(d, "without-y"), [], "missing y"),
    (_no_test, [], "no test.npz in"),
    (lambda d: write_data_dir(d, sizes=(20, 20)), ["--nodes", "3"], "--nodes 3 does not match the 2 node files"),
    (lambda d: write_data_dir(d, sizes=(20, 20)), ["--dataset", "digits"], "not both"),
])
def test_demo_data_dirs_are_checked_before_anything_starts(tmp_path, capsys, make, flags, says):
    """demo --data DIR (the nodes get DIR/node<i>, every node measures on DIR/test.npz): a
    directory it cannot use is one line and exit 2, and no process starts."""
    from learningchain.cli.main import main
    d, out = tmp_path / "mine", tmp_path / "demo"
    make(d)
    assert main(["demo", "--data", str(d), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_the_demo_baselines_of_a_users_directory(tmp_path):
    """local_baselines reads a directory without meta.json (demo --data DIR) as load_data_dir does."""
    from learningchain.cli.demo_rounds import local_baselines
    from learningchain.learning.models import spec_for
    d = write_data_dir(tmp_path / "mine", sizes=(40, 40))
    initial, base = local_baselines(spec_for("classification", 6, 3, "softmax"), d, 2, 1)
    assert set(initial) >= {"accuracy"} and len(base["local_only"]["per_node"]) == 2
    assert base["centralized"]["accuracy"] > 0.9
