"""The command line (learningchain/cli/main.py, inspection.py): real ``node.py``
processes where the exact output matters (one line, no traceback, exit status),
in-process calls of :func:`learningchain.cli.main.main` elsewhere."""
from __future__ import annotations

import json
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.cli import main as cli
from learningchain.core.errors import KeyFileError
from learningchain.node import keyfile
from learningchain.node.chainstate import Ledger
from learningchain.node.store import Store, store_path
from tests.helpers import KEYS, T0, next_block, tiny_config, tiny_genesis, update_tx

ROOT = Path(__file__).resolve().parents[2]


def node_py(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "node.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT))


def assert_one_line_error(proc: subprocess.CompletedProcess, status: int | None = None) -> str:
    assert proc.returncode != 0
    if status is not None:
        assert proc.returncode == status
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


# --- keygen ---------------------------------------------------------------------------

def test_keygen_writes_a_0600_key_and_prints_no_secret(tmp_path, capsys):
    assert cli.main(["keygen", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    path = keyfile.key_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = keyfile.load_key(tmp_path)
    assert key.address in out and key.public_hex in out
    assert "PRIVATE" not in out and str(key._sk.privkey.secret_multiplier) not in out


def test_keygen_refuses_to_overwrite(tmp_path):
    assert cli.main(["keygen", "--data-dir", str(tmp_path)]) == 0
    before = keyfile.key_path(tmp_path).read_bytes()
    proc = node_py("keygen", "--data-dir", str(tmp_path))
    line = assert_one_line_error(proc, 2)
    assert "already exists" in line
    assert keyfile.key_path(tmp_path).read_bytes() == before


# --- verify -----------------------------------------------------------------------------

def build_store(data_dir: Path, rounds: int = 2) -> int:
    """A real stored chain: blocks with signed updates that close ``rounds`` rounds."""
    config = tiny_config()
    (data_dir / "genesis.json").write_text(json.dumps(config.to_dict()))
    ledger = Ledger(tiny_genesis(), Store(store_path(data_dir)))
    chain = ledger.chain
    for _ in range(rounds):
        txs = [update_tx(chain, k, timestamp=T0) for k in KEYS[:3]]
        ledger.submit_block(next_block(chain, txs), 2**62)
        ledger.submit_block(next_block(chain), 2**62)
    height = chain.height
    ledger.store.close()
    return height


def test_verify_ok_on_a_good_store(tmp_path, capsys):
    height = build_store(tmp_path)
    assert cli.main(["verify", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and f"height {height}" in out


def test_verify_reports_its_progress_block_by_block(tmp_path):
    """What `node.py verify`'s progress bar is fed (a bar only on a terminal)."""
    from learningchain.node.chainstate import verify_store
    height = build_store(tmp_path)
    seen = []
    report = verify_store(tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert report.ok and seen == [(i, height + 1) for i in range(1, height + 2)]


def test_verify_says_where_a_hand_edited_store_breaks(tmp_path):
    build_store(tmp_path)
    db = sqlite3.connect(store_path(tmp_path))
    rows = db.execute("SELECT hash, height, data FROM blocks ORDER BY height").fetchall()
    block_hash, height, data = next(r for r in rows if json.loads(r[2])["txs"])
    doc = json.loads(data)
    doc["txs"][0]["num_samples"] += 1  # one number changed by hand
    db.execute("UPDATE blocks SET data = ? WHERE hash = ?", (json.dumps(doc), block_hash))
    db.commit()
    db.close()
    proc = node_py("verify", "--data-dir", str(tmp_path))
    line = assert_one_line_error(proc, 1)
    assert line.startswith(f"BROKEN at height {height}") and block_hash in line
    assert f"best valid tip at height {height - 1}" in line


def test_verify_of_a_missing_dir_is_one_line(tmp_path):
    line = assert_one_line_error(node_py("verify", "--data-dir", str(tmp_path / "nope")), 2)
    assert "no such data directory" in line


# --- inspection against nothing -----------------------------------------------------------

@pytest.mark.parametrize("command", [["status"], ["chain"], ["block", "0"], ["round", "1"]])
def test_inspection_of_an_unreachable_node_is_one_line(command):
    proc = node_py(*command, "--node", "http://127.0.0.1:9")
    line = assert_one_line_error(proc, 1)
    assert "cannot reach node at http://127.0.0.1:9: is it running?" in line


# --- bad command lines ----------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["run", "--data-dir", "x"],            # missing --port
                                  ["run", "--data-dir", "x", "--port", "99999"],
                                  ["status", "--bogus"],
                                  ["demo", "--nodes", "many"],
                                  ["frobnicate"]])
def test_bad_flags_exit_2_with_one_line(argv):
    proc = node_py(*argv)
    line = assert_one_line_error(proc, 2)
    assert "error:" in line and "--help" in line


@pytest.mark.parametrize("argv, status, says", [
    (["--nodes", "0"], 2, "argument --nodes: '0' must be a positive integer"),
    (["--rounds", "0"], 2, "argument --rounds: '0' must be a positive integer"),
    (["--byzantine", "-1"], 2, "argument --byzantine: '-1' must be 0 or a positive integer"),
    (["--base-port", "70000"], 2, "argument --base-port: '70000' is not a TCP port"),
    (["--nodes", "3", "--byzantine", "3", "--attack", "sign-flip"], 2, "--byzantine must be in [0, 2]"),
    (["--byzantine", "1"], 2, "--byzantine needs --attack NAME"),
    (["--selection", "top-k"], 2, "--selection top-k needs --select-k in [1, 4]"),
    (["--miners", "0"], 2, "argument --miners: '0' must be a positive integer"),
    (["--miners", "3", "--byzantine", "2", "--attack", "sign-flip"], 2,
     "--miners 3 and --byzantine 2 overlap with --nodes 4"),
    (["--secure-aggregation", "--aggregator", "krum"], 2, "robust rule krum cannot run under secure aggregation"),
    (["--sa-threshold", "3"], 2, "--sa-threshold, --sa-clip and --sa-phase-timeout need --secure-aggregation"),
    (["--secure-aggregation", "--compression", "q8"], 2, "--compression does not apply under --secure-aggregation"),
    (["--secure-aggregation", "--sa-threshold", "2"], 2, "--sa-threshold 2 must be in [floor(N/2)+1, N] = [3, 4]"),
])
def test_demo_flags_are_checked_before_anything_starts(tmp_path, capsys, argv, status, says):
    from learningchain.cli.main import main
    out = tmp_path / "demo"
    try:
        code = main(["demo", "--out", str(out), *argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == status and says in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # no node started, nothing written


def test_genesis_writes_a_config_run_accepts(tmp_path, capsys):
    out = tmp_path / "genesis.json"
    dirs = [tmp_path / f"n{i}" for i in range(3)]
    assert cli.main(["genesis", "--nodes", "3", "--dataset", "digits", "--out", str(out),
                     "--aggregator", "median", "--allow-list", ",".join(map(str, dirs))]) == 0
    config = cli.load_genesis_file(out)
    assert config.quorum == 3 and config.rule == "median"
    assert config.allow_list == tuple(keyfile.load_or_create_key(d).public_hex for d in dirs)
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def test_genesis_makes_the_admission_choice_explicit(tmp_path, capsys):
    """No allow-list and no --open: refused, naming both; --open writes allow_list null."""
    out = tmp_path / "genesis.json"
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--allow-list" in err and "--open" in err and not out.exists()
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out), "--open"]) == 0
    config = cli.load_genesis_file(out)
    assert config.allow_list is None and config.stamp_bits == 16 and "open to any key" in capsys.readouterr().out


def test_run_with_a_broken_genesis_file_is_one_line(tmp_path):
    bad = tmp_path / "genesis.json"
    bad.write_text("{not json")
    proc = node_py("run", "--data-dir", str(tmp_path / "d"), "--port", "1", "--genesis", str(bad))
    line = assert_one_line_error(proc, 2)
    assert str(bad) in line


def test_run_with_a_missing_data_file_is_one_line(tmp_path):
    proc = node_py("run", "--data-dir", str(tmp_path / "n"), "--port", "5999",
                   "--data", str(tmp_path / "missing.npz"))
    assert "missing.npz not found" in assert_one_line_error(proc, 2)


# --- key files of `run` ------------------------------------------------------------------

def test_run_with_a_missing_key_on_an_existing_store_is_one_line(tmp_path):
    """A data dir that holds a chain but lost its key must not get a new identity."""
    build_store(tmp_path, rounds=1)
    proc = node_py("run", "--data-dir", str(tmp_path), "--port", "1")
    line = assert_one_line_error(proc, 1)
    assert "restore the key" in line and "fresh --data-dir" in line
    assert not keyfile.key_path(tmp_path).exists()


def test_run_with_a_world_readable_key_is_one_line(tmp_path):
    assert cli.main(["keygen", "--data-dir", str(tmp_path)]) == 0
    keyfile.key_path(tmp_path).chmod(0o644)
    proc = node_py("run", "--data-dir", str(tmp_path), "--port", "1")
    assert "chmod 600" in assert_one_line_error(proc, 1)


def test_run_with_a_corrupt_key_is_one_line(tmp_path):
    path = keyfile.key_path(tmp_path)
    path.write_bytes(b"-----BEGIN EC PRIVATE KEY-----\nnot a key\n-----END EC PRIVATE KEY-----\n")
    path.chmod(0o600)
    proc = node_py("run", "--data-dir", str(tmp_path), "--port", "1")
    assert "not a valid PEM" in assert_one_line_error(proc, 1)


def test_a_fresh_data_dir_gets_a_key_but_a_stored_chain_does_not(tmp_path):
    fresh = keyfile.load_or_create_key(tmp_path / "fresh")
    assert keyfile.load_key(tmp_path / "fresh").public_hex == fresh.public_hex
    (tmp_path / "old").mkdir()
    build_store(tmp_path / "old", rounds=1)
    with pytest.raises(KeyFileError):
        keyfile.load_or_create_key(tmp_path / "old")


@pytest.mark.parametrize("argv, status, says", [
    (["simulate", "--dp-mode", "laplace"], 2, "argument --dp-mode: invalid choice"),
    (["simulate", "--dp-delta", "1"], 2, "argument --dp-delta: '1' must lie in (0, 1)"),
    (["simulate", "--dp-sample-rate", "0"], 2, "argument --dp-sample-rate: '0' must be in (0, 1]"),
    (["simulate", "--dp-epsilon", "nan"], 2, "argument --dp-epsilon: 'nan' must be a finite number >= 0"),
    (["simulate", "--dp-mode", "sample"], 2, "--dp-mode sample needs --dp-epsilon"),
    (["simulate", "--dp-sample-rate", "0.5", "--dp-sigma", "1", "--dp-clip", "1"], 2, "sample only"),
    (["run", "--data-dir", "D", "--port", "5990", "--dp-mode", "sample"], 2, "--dp-mode sample needs --dp-epsilon"),
    (["run", "--data-dir", "D", "--port", "5990", "--dp-epsilon", "8"], 2, "needs a clip norm"),
    (["run", "--data-dir", "D", "--port", "5990", "--dp-delta", "0"], 2, "'0' must lie in (0, 1)"),
    (["demo", "--out", "D", "--dp-mode", "sample"], 2, "--dp-mode sample needs --dp-epsilon"),
    (["demo", "--out", "D", "--dp-sample-rate", "2"], 2, "'2' must be in (0, 1]"),
])
def test_dp_flags_refused_with_one_line(tmp_path, capsys, argv, status, says):
    argv = [str(tmp_path / "d") if a == "D" else a for a in argv]
    if argv[0] == "simulate":
        argv += ["--nodes", "2", "--rounds", "1", "--out", str(tmp_path / "d")]
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == status and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "d").exists()


def test_simulate_sample_mode_prints_and_writes_its_privacy(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["simulate", "--nodes", "2", "--rounds", "2", "--model", "softmax", "--dp-mode", "sample",
                     "--dp-epsilon", "3", "--dp-delta", "1e-6", "--dp-clip", "0.5", "--dp-sample-rate", "0.5",
                     "--no-baselines", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "privacy (sample mode, record-level, add/remove-one example): epsilon " in printed
    assert 2.9 < float(printed.split("add/remove-one example): epsilon ")[1].split(",")[0]) <= 3.0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["dp_mode"] == "sample" and res["config"]["dp_sample_rate"] == 0.5
    rep = res["privacy"]["node0"]
    assert rep["delta"] == 1e-6 and rep["sample_rate"] == 0.5 and rep["steps"] == 4 and rep["epsilon"] <= 3


def test_demo_passes_its_dp_flags_to_every_node():
    from argparse import Namespace
    from learningchain.cli.argtypes import dp_argv
    args = Namespace(dp_mode="sample", dp_epsilon=8.0, dp_delta=1e-5, dp_sigma=0.0, dp_clip=0.0, dp_sample_rate=0.0)
    assert dp_argv(args, 12) == ("--dp-mode", "sample", "--dp-epsilon", "8.0", "--dp-rounds", "12")
    args = Namespace(dp_mode=None, dp_epsilon=0.0, dp_delta=1e-6, dp_sigma=2.0, dp_clip=0.5, dp_sample_rate=0.0)
    assert dp_argv(args, 12) == ("--dp-delta", "1e-06", "--dp-sigma", "2.0", "--dp-clip", "0.5")


def test_genesis_refuses_secure_aggregation_with_a_robust_rule(tmp_path, capsys):
    from learningchain.cli.main import main
    from learningchain.core import crypto
    keys = ",".join(crypto.PrivateKey.from_secret(900 + i).public_hex for i in range(4))
    code = main(["genesis", "--nodes", "4", "--out", str(tmp_path / "g.json"), "--secure-aggregation",
                 "--allow-list", keys, "--aggregator", "median"])
    err = capsys.readouterr().err
    assert code == 2 and "robust rule median cannot run under secure aggregation" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "g.json").exists()


def test_genesis_refuses_secure_aggregation_without_a_roster(tmp_path):
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run([sys.executable, str(root / "node.py"), "genesis", "--nodes", "4", "--out",
                               str(tmp_path / "g.json"), "--secure-aggregation", "--open"],
                              capture_output=True, text=True, timeout=20, cwd=str(root))
    except subprocess.TimeoutExpired:
        pytest.fail("node.py genesis --secure-aggregation --open hangs (default_params with N = 0)")
    assert done.returncode == 2 and "secure aggregation needs a known roster" in done.stderr, done.stderr


def test_a_demo_refused_for_its_dataset_leaves_the_previous_run_alone(tmp_path, capsys):
    """Issue 14, item 2: `demo --dataset mnist` after a run deleted out/demo/nodes
    and the logs before it found the dataset unknown."""
    from learningchain.cli.main import main
    out = tmp_path / "demo"
    (out / "nodes" / "node0").mkdir(parents=True)
    (out / "nodes" / "node0" / "chain.sqlite3").write_bytes(b"previous run")
    (out / "node0.log").write_text("previous log\n")
    code = main(["demo", "--out", str(out), "--dataset", "mnist"])
    err = capsys.readouterr().err
    assert code != 0 and "mnist" in err and len(err.strip().splitlines()) == 1, err
    assert (out / "nodes" / "node0" / "chain.sqlite3").read_bytes() == b"previous run"
    assert (out / "node0.log").read_text() == "previous log\n"


# --- issue 14, rough errors ------------------------------------------------------------------

def run_main(argv) -> tuple[int, str]:
    """``main(argv)``'s exit status (argparse's SystemExit included) and stderr."""
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def test_run_refuses_a_data_dir_whose_parent_is_missing(tmp_path):
    """`--data-dir /nonexistent/deep/dir` silently made it and a new key there."""
    deep = tmp_path / "nonexistent" / "deep" / "dir"
    line = assert_one_line_error(node_py("run", "--data-dir", str(deep), "--port", "5999"), 2)
    assert f"its parent {deep.parent} does not exist" in line and f"mkdir -p {deep.parent}" in line
    assert f"keygen --data-dir {deep}'" in line and "'python node.py" not in line
    assert not (tmp_path / "nonexistent").exists()
    (tmp_path / "plain").write_text("")
    code, err = run_main(["run", "--data-dir", str(tmp_path / "plain"), "--port", "5999"])
    assert code == 2 and "is a file, not a directory" in err


def test_a_first_start_in_an_existing_parent_still_makes_the_dir_and_key(tmp_path):
    """The node gets as far as listening (a busy port then stops it: a runtime
    failure, exit status 1), with its new data dir and key made on the way."""
    import socket
    fresh = tmp_path / "fresh"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, err = run_main(["run", "--data-dir", str(fresh), "--port", str(busy.getsockname()[1])])
    assert code == 1 and "cannot listen on 127.0.0.1:" in err and len(err.strip().splitlines()) == 1, err
    assert keyfile.key_path(fresh).is_file()


@pytest.mark.parametrize("argv, says", [
    (["demo", "--aggregator", "bulyan"], "bulyan (f=1) needs at least 7 updates a round, more than the quorum "
                                         "of 4 (one update per node): pass --nodes 7 or more"),
    (["demo", "--aggregator", "krum", "--nodes", "6", "--byzantine", "2", "--attack", "sign-flip"],
     "krum (f=2) needs at least 7 updates a round, more than the quorum of 6 (one update per node): pass "
     "--nodes 7 or more, or lower --byzantine to 1"),
    (["simulate", "--aggregator", "bulyan", "--nodes", "4", "--rounds", "1"], "pass --nodes 7 or more"),
    (["simulate", "--aggregator", "krum", "--nodes", "9", "--quorum", "4", "--rounds", "1"],
     "more than the quorum of 4: pass --quorum 5 or more"),
    (["simulate", "--aggregator", "krum", "--nodes", "5", "--agg-param", "f=2", "--rounds", "1"],
     "pass --nodes 7 or more, or smaller parameters in --agg-param"),
    (["experiment", "selection", "--aggregator", "krum", "--nodes", "4"], "pass --nodes 5 or more"),
    (["experiment", "dp", "--aggregator", "bulyan", "--nodes", "5"], "pass --nodes 7 or more"),
    (["experiment", "byzantine", "--aggregators", "fedavg,krum", "--nodes", "6", "--max-byzantine", "2"],
     "pass --nodes 7 or more, or lower --max-byzantine to 1"),
    (["genesis", "--nodes", "4", "--aggregator", "krum", "--open"],
     "krum (f=1) needs at least 5 updates a round, more than the quorum of 4 (one update per node): pass "
     "--nodes 5 or more, or smaller parameters in --params"),
    (["genesis", "--nodes", "7", "--quorum", "4", "--aggregator", "bulyan", "--open"],
     "bulyan (f=1) needs at least 7 updates a round, more than the quorum of 4: pass --quorum 7 or more"),
])
def test_quorum_errors_name_the_flags_of_the_command_run(tmp_path, argv, says):
    """Issue 14: demo said "raise quorum or lower the rule's parameters" (it has
    neither flag) and genesis said "genesis: genesis: ..."."""
    out = tmp_path / "out"
    code, err = run_main([*argv, "--out", str(out if argv[0] != "genesis" else tmp_path / "g.json")])
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"node.py {argv[0]}: aggregator ") and "genesis: genesis" not in err
    assert "raise quorum" not in err and not out.exists() and not (tmp_path / "g.json").exists()


def test_the_least_node_count_a_rule_needs_is_what_makes_it_run(tmp_path):
    """The --nodes the message computes does run (the rules' minima 2f+3, 4f+3)."""
    from learningchain.cli.demo import make_config
    from learningchain.learning.aggregation import min_nodes
    assert [min_nodes("krum", b) for b in range(4)] == [5, 5, 7, 9]
    assert min_nodes("bulyan", 0) == 7 and min_nodes("krum", 0, {"f": 3}) == 9
    assert min_nodes("krum", 0, {"f": 10**6}) is None
    from learningchain.core.errors import ConfigError
    for rule, b in (("krum", 2), ("bulyan", 0), ("multi-krum", 3), ("trimmed-mean", 2), ("l-nearest", 1)):
        n = min_nodes(rule, b)
        make_config(n, "digits", rule, b)  # genesis accepts it
        if n - 1 > b:  # and one node fewer is refused
            with pytest.raises(ConfigError, match="quorum"):
                make_config(n - 1, "digits", rule, b)


@pytest.mark.parametrize("argv", [
    ["demo", "--dataset", "mnist"], ["simulate", "--dataset", "mnist"], ["experiment", "dp", "--dataset", "mnist"],
    ["data", "--dataset", "mnist"], ["genesis", "--nodes", "3", "--aggregator", "mean", "--open"],
    ["run", "--data-dir", "D", "--port", "5999", "--attack", "nonsense"], ["status", "--node", "ftp://x"],
    ["block", "0", "--node", "http://127.0.0.1:99999"], ["experiment", "dp", "--sigmas", "1,x"],
    ["run", "--data-dir", "D", "--port", "5999", "--dataset", "digits"],
])
def test_usage_errors_exit_2_from_every_command(tmp_path, argv):
    """An unknown dataset exited 1 from demo but 2 from simulate: every bad flag
    value or unknown name is a usage error (exit 2), as argparse's are."""
    argv = [str(tmp_path / "d") if a == "D" else a for a in argv]
    if argv[0] in ("demo", "simulate", "experiment", "data"):
        argv += ["--out", str(tmp_path / "d")]
    elif argv[0] == "genesis":
        argv += ["--out", str(tmp_path / "d" / "g.json")]
    code, err = run_main(argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "d").exists()


def test_runtime_failures_exit_1_and_the_convention_is_in_help(capsys):
    code, err = run_main(["status", "--node", "http://127.0.0.1:9"])
    assert code == 1 and "cannot reach node at http://127.0.0.1:9" in err
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done; 1 the command ran and failed" in text and "2 the command line is wrong" in text


def test_node_urls_are_checked_before_any_request():
    """`ftp://` and port 99999 ended in requests' `No connection adapters...`."""
    from learningchain.cli.argtypes import node_url
    from learningchain.cli.inspection import NodeClient
    from learningchain.core.errors import ConfigError
    assert node_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert node_url(" https://h.example:443/ ") == "https://h.example:443"
    for bad, says in (("ftp://x", "scheme 'ftp' is not http or https"), ("http://a:99999", "1..65535"),
                      ("http://a:0", "1..65535"), ("http://a:x", "1..65535"), ("http://", "http(s)://host"),
                      ("http://u:p@a:1", "credentials"), ("http://a:1/?q=1", "query")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            NodeClient(bad)
    proc = node_py("chain", "--node", "ftp://127.0.0.1:5000")
    line = assert_one_line_error(proc, 2)
    assert "argument --node: 'ftp://127.0.0.1:5000' is not a node URL" in line and "adapter" not in line


@pytest.fixture
def other_server():
    """A server that is not a LearningChain node (tests/served.py FakePeer)."""
    from tests.served import fake_peer_factory
    yield from fake_peer_factory()


@pytest.mark.parametrize("body, status", [
    (b"<html><body>It works!</body></html>", 200), (b'{"status": "ok", "version": 3}', 200),
    (b'[1, 2, 3]', 200), (b'{"height": "tall", "genesis": 1}', 200),
    (b"<html>Not Found</html>", 404), (b'{"detail": "Not Found"}', 404),
])
@pytest.mark.parametrize("command", [["chain"], ["status"], ["block", "0"], ["round"], ["peers"]])
def test_a_server_that_is_not_a_node_is_named_so(other_server, body, status, command):
    """`chain --node <a server that is not a node>` said `unexpected ValueError`."""
    other = other_server(reply=body, status=status)
    code, err = run_main([*command, "--node", other.url])
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{other.url} is not a LearningChain node" in err and "unexpected" not in err, err


def test_not_a_node_is_one_line_without_traceback_from_a_process(other_server):
    other = other_server(reply=b'{"status": "ok"}')
    line = assert_one_line_error(node_py("chain", "--node", other.url), 1)
    assert line.startswith(f"node.py chain: {other.url} is not a LearningChain node")


def test_run_takes_its_data_file_as_data_and_dataset_file_still_works(tmp_path):
    """`run --dataset` took a file where every other --dataset takes a name."""
    from argparse import Namespace
    import contextlib
    import io
    part = tmp_path / "node0.npz"
    part.write_bytes(b"")
    assert cli.data_file(Namespace(data=str(part), dataset=None)) == str(part)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.data_file(Namespace(data=None, dataset=str(part))) == str(part)
    assert err.getvalue() == f"node.py run: warning: --dataset FILE is deprecated, use --data {part}\n"
    code, err = run_main(["run", "--data-dir", str(tmp_path / "d"), "--port", "5999", "--data", str(part),
                          "--dataset", str(part)])
    assert code == 2 and "--data FILE" in err
    code, err = run_main(["run", "--data-dir", str(tmp_path / "d"), "--port", "5999", "--dataset", "digits"])
    assert code == 2 and "pass --data FILE, e.g. --data data/digits-4-iid/node0.npz" in err, err


def test_every_flag_of_every_command_says_what_it_does():
    import argparse
    from learningchain.cli.argtypes import complete
    parser = complete(cli.build_parser())  # every command's flags, not only those parsed
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    missing = []
    for name, command in sub.choices.items():
        if not (helps.get(name) or "").strip():
            missing.append(name)
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    assert len(sub.choices) >= 14


def test_help_texts_that_were_stale():
    import argparse
    from learningchain.cli.argtypes import complete
    sub = next(a for a in complete(cli.build_parser())._actions if isinstance(a, argparse._SubParsersAction))
    summary = {c.dest: c.help for c in sub._choices_actions}
    assert all(kind in summary["experiment"] for kind in ("byzantine", "dp", "selection", "compression"))
    data_dir = next(a for a in sub.choices["run"]._actions if a.dest == "data_dir").help
    assert "logs live" not in data_dir and "stdout" in data_dir


def test_hints_from_lower_layers_name_the_interpreter_that_runs(tmp_path):
    """keyfile (the node layer cannot know the interpreter) writes 'node.py keygen';
    the command line prints a runnable `.venv/bin/python node.py keygen`."""
    from learningchain.cli.argtypes import node_py as runnable
    with pytest.raises(KeyFileError) as missing:
        keyfile.load_key(tmp_path)
    assert "python node.py" not in str(missing.value) and "'node.py keygen --data-dir" in str(missing.value)
    assert f"'{runnable()} keygen --data-dir {tmp_path}'" in cli.one_line(missing.value)


def test_docs_print_no_bare_python_node_py():
    """`python node.py ...` with the system interpreter ends in a traceback."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    bad = [f"{p.name}:{i}" for p in docs if p.name != "api.md"
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if re.search(r"(?<![/\w])python3? node\.py", line)]
    assert not bad, bad


def test_every_command_of_the_readme_and_docs_parses_as_written():
    """Each `.venv/bin/python node.py ...` line (with its `\\` continuations) of the
    README and docs/*.md is a valid command line: no flag the CLI lost or renamed."""
    import shlex
    commands = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            text = line.strip().lstrip("# ")
            if not text.startswith(".venv/bin/python node.py"):
                continue
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            argv = text.split("node.py", 1)[1].split(" &")[0].split("  #")[0].split(" # ")[0].split("`")[0]
            if not any(mark in argv for mark in ("[", "...", "|")):  # placeholders, not commands
                commands.append((f"{path.name}:{i + 1}", shlex.split(argv)))
    assert len(commands) >= 20
    parser = cli.build_parser()
    for where, argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: node.py {' '.join(argv)} no longer parses")

HEAVY = ("numpy", "sklearn", "scipy", "dp_accounting", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], ["status", "--node", "http://127.0.0.1:9"],
                                  ["block", "--help"], ["round", "3", "--json", "--node", "http://127.0.0.1:9"]])
def test_the_command_line_starts_without_the_learning_stack(argv):
    """Issue 14 (a fast CLI): `node.py --help` and the inspection commands import
    neither numpy nor scikit-learn, SciPy, dp-accounting or matplotlib (scikit-learn
    took `node.py --help` 2.6 s; numpy's import is a third of the 0.3 s budget):
    the flags of `run`, `demo`, `simulate`, ... are added when that command is
    parsed (argtypes.LazyCommands)."""
    code = ("import sys; from learningchain.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_a_lazily_built_parser_parses_as_a_complete_one():
    """The flags of a command are there when it is parsed, and complete() adds
    every command's (for a test that walks them all)."""
    from learningchain.cli.argtypes import complete
    args = cli.build_parser().parse_args(["simulate", "--nodes", "3", "--attack", "sign-flip"])
    assert args.nodes == 3 and args.attack == "sign-flip" and args.func.__name__ == "cmd_simulate"
    parser = complete(cli.build_parser())
    sub = next(a for a in parser._actions if a.dest == "command")
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}
    assert "--dp-epsilon" in flags["run"] and "--aggregator" in flags["genesis"] and "--keep" in flags["demo"]
    assert "--agg-param" in flags["simulate"] and "--sigmas" in flags["experiment"] and "--json" in flags["status"]


def test_run_usage_errors_answer_before_the_node_is_imported(tmp_path):
    """A mistyped --data-dir or --data took 1.3 s (2.4 s on a loaded machine): cmd_run
    imported the node, its learner and the DP accountant (SciPy) before checking them.
    The same one-line errors now come before that import."""
    cases = [(["--data-dir", str(tmp_path / "no" / "such"), "--data", "x.npz"], "its parent"),
             (["--data-dir", str(tmp_path), "--data", str(tmp_path / "missing.npz")], "missing.npz not found")]
    late = ("learningchain.node.run", "learningchain.node.participant", "dp_accounting", "scipy")
    for flags, says in cases:
        argv = ["run", "--port", "5999", *flags]
        code = ("import sys; from learningchain.cli.main import main\n"
                f"try:\n    code = main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
                "print('exit', code)\n"
                f"print([m for m in {late!r} if m in sys.modules])")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              cwd=str(ROOT))
        assert done.stdout.strip().splitlines()[-2:] == ["exit 2", "[]"], done.stdout + done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("node.py run: --data") and says in line


def test_run_with_a_missing_test_file_is_one_line(tmp_path):
    code, err = run_main(["run", "--data-dir", str(tmp_path / "d"), "--port", "5999",
                          "--test", str(tmp_path / "nope.npz")])
    assert code == 2 and err.count("\n") == 1 and "--test: test file" in err and "nope.npz not found" in err
