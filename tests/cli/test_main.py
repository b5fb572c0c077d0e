"""The command line (learningchain/cli/main.py, inspection.py): real ``node.py``
processes where the exact output matters (one line, no traceback, exit status),
in-process calls of :func:`learningchain.cli.main.main` elsewhere."""
from __future__ import annotations

import json
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
    line = assert_one_line_error(proc, 1)
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
    line = assert_one_line_error(node_py("verify", "--data-dir", str(tmp_path / "nope")), 1)
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
    (["--nodes", "3", "--byzantine", "3", "--attack", "sign-flip"], 1, "--byzantine must be in [0, 2]"),
    (["--byzantine", "1"], 1, "--byzantine needs --attack NAME"),
    (["--selection", "top-k"], 1, "--selection top-k needs --select-k in [1, 4]"),
    (["--miners", "0"], 2, "argument --miners: '0' must be a positive integer"),
    (["--miners", "3", "--byzantine", "2", "--attack", "sign-flip"], 1,
     "--miners 3 and --byzantine 2 overlap with --nodes 4"),
    (["--secure-aggregation", "--aggregator", "krum"], 1, "robust rule krum cannot run under secure aggregation"),
    (["--sa-threshold", "3"], 1, "--sa-threshold, --sa-clip and --sa-phase-timeout need --secure-aggregation"),
    (["--secure-aggregation", "--compression", "q8"], 1, "--compression does not apply under --secure-aggregation"),
    (["--secure-aggregation", "--sa-threshold", "2"], 1, "--sa-threshold 2 must be in [floor(N/2)+1, N] = [3, 4]"),
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
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out)]) == 1  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def test_genesis_makes_the_admission_choice_explicit(tmp_path, capsys):
    """No allow-list and no --open: refused, naming both; --open writes allow_list null."""
    out = tmp_path / "genesis.json"
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--allow-list" in err and "--open" in err and not out.exists()
    assert cli.main(["genesis", "--nodes", "3", "--out", str(out), "--open"]) == 0
    config = cli.load_genesis_file(out)
    assert config.allow_list is None and config.stamp_bits == 16 and "open to any key" in capsys.readouterr().out


def test_run_with_a_broken_genesis_file_is_one_line(tmp_path):
    bad = tmp_path / "genesis.json"
    bad.write_text("{not json")
    proc = node_py("run", "--data-dir", str(tmp_path / "d"), "--port", "1", "--genesis", str(bad))
    line = assert_one_line_error(proc, 1)
    assert str(bad) in line


def test_run_with_a_missing_dataset_file_is_one_line(tmp_path):
    proc = node_py("run", "--data-dir", str(tmp_path / "n"), "--port", "5999",
                   "--dataset", str(tmp_path / "missing.npz"))
    assert "missing.npz not found" in assert_one_line_error(proc, 1)


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
    (["run", "--data-dir", "D", "--port", "5990", "--dp-mode", "sample"], 1, "--dp-mode sample needs --dp-epsilon"),
    (["run", "--data-dir", "D", "--port", "5990", "--dp-epsilon", "8"], 1, "needs a clip norm"),
    (["run", "--data-dir", "D", "--port", "5990", "--dp-delta", "0"], 2, "'0' must lie in (0, 1)"),
    (["demo", "--out", "D", "--dp-mode", "sample"], 1, "--dp-mode sample needs --dp-epsilon"),
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
    assert code == 1 and "robust rule median cannot run under secure aggregation" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "g.json").exists()


def test_genesis_refuses_secure_aggregation_without_a_roster(tmp_path):
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run([sys.executable, str(root / "node.py"), "genesis", "--nodes", "4", "--out",
                               str(tmp_path / "g.json"), "--secure-aggregation", "--open"],
                              capture_output=True, text=True, timeout=20, cwd=str(root))
    except subprocess.TimeoutExpired:
        pytest.fail("node.py genesis --secure-aggregation --open hangs (default_params with N = 0)")
    assert done.returncode == 1 and "secure aggregation needs a known roster" in done.stderr, done.stderr


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
