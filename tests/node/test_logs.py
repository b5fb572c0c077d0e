"""The node's logging (:mod:`learningchain.node.logs`): one whole line per record from
many threads at once (to a file, and to a process's stdout redirected to a file, as the
demo runs nodes), JSON lines that parse, the text line of old, per-node loggers that
share nothing, levels, and the ``--admin-allow`` parser."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from learningchain.node import logs
from learningchain.node.logs import OpsSettings, address_allowed, admin_networks, emit, node_logger

THREADS, LINES = 8, 300
#: long enough that a torn write would show: each line is ~1.2 KB
PAYLOAD = "x" * 1200
TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \[(\d+)\] t(\d+) n(\d+) (x+)$")


def hammer(loggers) -> None:
    def run(t: int) -> None:
        for i in range(LINES):
            emit(loggers[t % len(loggers)], f"t{t} n{i} {PAYLOAD}")
    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def check_text(lines: list[str], ports: set[int]) -> None:
    assert len(lines) == THREADS * LINES
    seen = set()
    for line in lines:
        m = TEXT_LINE.match(line)
        assert m and len(m.group(4)) == len(PAYLOAD), line[:80]
        assert int(m.group(1)) in ports
        seen.add((int(m.group(2)), int(m.group(3))))
    assert len(seen) == THREADS * LINES


def test_threads_write_whole_text_lines_to_a_file(tmp_path):
    f = tmp_path / "node.log"
    f.write_text("an earlier run\n")  # --log-file appends
    a = node_logger(7001, OpsSettings.parse(log_file=str(f)))
    b = node_logger(7002, OpsSettings.parse(log_file=str(f)))  # two nodes, one file, one process
    hammer([a, b])
    lines = f.read_text().splitlines()
    assert lines[0] == "an earlier run"
    check_text(lines[1:], {7001, 7002})


def test_threads_write_whole_json_lines(tmp_path):
    f = tmp_path / "node.json"
    logger = node_logger(7003, OpsSettings.parse(log_format="json", log_file=str(f)), address="ab" * 20)
    hammer([logger])
    emit(logger, "two\nlines")
    lines = f.read_text().splitlines()
    assert len(lines) == THREADS * LINES + 1
    docs = [json.loads(line) for line in lines]
    assert {tuple(sorted(d)) for d in docs} == {("level", "msg", "node", "port", "thread", "ts")}
    assert all(d["level"] == "info" and d["port"] == 7003 and d["node"] == "ab" * 20 for d in docs)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", docs[0]["ts"])
    assert docs[-1]["msg"] == "two\nlines"


STDOUT_SCRIPT = f"""
import sys, threading
from learningchain.node.logs import node_logger, emit
loggers = [node_logger(7010), node_logger(7011)]
def run(t):
    for i in range({LINES}):
        emit(loggers[t % 2], f"t{{t}} n{{i}} {PAYLOAD}")
threads = [threading.Thread(target=run, args=(t,)) for t in range({THREADS})]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_threads_write_whole_lines_to_redirected_stdout(tmp_path):
    """As the demo runs a node: stdout redirected to a file; two nodes' loggers in one process."""
    out = tmp_path / "stdout.log"
    with out.open("w") as f:
        subprocess.run([sys.executable, "-c", STDOUT_SCRIPT], stdout=f, check=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    check_text(out.read_text().splitlines(), {7010, 7011})


def test_text_line_is_the_node_line_of_old_and_newlines_are_escaped(capsys):
    logger = node_logger(5000)
    emit(logger, "block 3 abc connected (1 txs, miner 02ab)")
    emit(logger, "first\nsecond")
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} \[5000\] block 3 abc connected \(1 txs, miner 02ab\)", out[0])
    assert out[1].endswith("[5000] first\\nsecond") and len(out) == 2


def test_loggers_share_nothing_and_levels_filter(tmp_path, capsys):
    quiet = node_logger(5000, quiet=True)
    loud = node_logger(5000)
    warn = node_logger(5000, OpsSettings.parse(log_level="warning", log_file=str(tmp_path / "w.log")))
    assert len({quiet.name, loud.name, warn.name}) == 3
    assert not (set(loud.handlers) & set(warn.handlers)) and not quiet.handlers
    assert not loud.propagate and not warn.propagate
    for lg in (quiet, loud, warn):
        emit(lg, "routine")
        emit(lg, "WARNING: odd", logs.logging.WARNING)
    assert capsys.readouterr().out.count("routine") == 1  # loud only
    assert (tmp_path / "w.log").read_text().count("\n") == 1  # warn: the warning only


def test_admin_networks_parse_and_match():
    assert admin_networks("any") is None and address_allowed(None, "8.8.8.8")
    loop = admin_networks("loopback")
    assert address_allowed(loop, "127.0.0.1") and address_allowed(loop, "::1")
    assert address_allowed(loop, "::ffff:127.0.0.1") and not address_allowed(loop, "10.0.0.1")
    assert not address_allowed(loop, None) and not address_allowed(loop, "not-an-ip")
    nets = admin_networks("10.0.0.0/8, 192.168.1.5")
    assert address_allowed(nets, "10.200.0.1") and address_allowed(nets, "192.168.1.5")
    assert not address_allowed(nets, "192.168.1.6") and not address_allowed(nets, "127.0.0.1")
    for bad in ("", "10.0.0.0/33", "lan", "10.0.0.0/8,nope"):
        with pytest.raises(ValueError):
            admin_networks(bad)
    with pytest.raises(ValueError, match="--log-format"):
        OpsSettings.parse(log_format="xml")


def test_run_refuses_bad_ops_flags_in_one_line(tmp_path, capsys):
    from learningchain.cli import main as cli
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--data-dir", str(tmp_path / "n"), "--port", "5999", "--admin-allow", "10.0.0.0/40"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and "'10.0.0.0/40' is neither" in err
    code = cli.main(["run", "--data-dir", str(tmp_path / "n"), "--port", "5999", "--genesis",
                     str(write_genesis(tmp_path)), "--log-file", str(tmp_path / "no" / "such" / "x.log")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--log-file" in err and "cannot append" in err


def write_genesis(tmp_path: Path) -> Path:
    from tests.helpers import tiny_config
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(tiny_config().to_dict()))
    return path


def test_ops_flags_come_from_the_environment_and_the_command_line_wins(monkeypatch):
    """The run_config convention: LC_LOG_FORMAT, LC_ADMIN_ALLOW, ... (command line > environment)."""
    from learningchain.cli import main as cli
    from learningchain.node.logs import ops_settings
    monkeypatch.setenv("LC_LOG_FORMAT", "json")
    monkeypatch.setenv("LC_LOG_LEVEL", "warning")
    monkeypatch.setenv("LC_ADMIN_ALLOW", "loopback,10.0.0.0/8")
    args = cli.build_parser().parse_args(["run", "--data-dir", "d", "--port", "5000", "--log-level", "debug"])
    ops = ops_settings(args)
    assert (ops.log_format, ops.log_level, ops.admin_allow) == ("json", "debug", "loopback,10.0.0.0/8")
    assert address_allowed(ops.admin_nets, "10.9.8.7") and not address_allowed(ops.admin_nets, "192.168.0.1")
