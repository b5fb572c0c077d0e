"""What tmux_demo.sh's status pane runs (`./tmux_demo.sh status`, every 2 s):
one line per node, every node, a node that is down included (tmux itself is
not needed for it)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.served import network_factory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def test_the_status_pane_shows_every_node_on_one_line(network):
    a = network("a")
    env = {**os.environ, "NODES": "2", "BASE_PORT": str(a.port)}  # node 1 (port + 1) is not running
    done = subprocess.run([str(ROOT / "tmux_demo.sh"), "status"], capture_output=True, text=True, timeout=60,
                          env=env, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].startswith(f":{a.port} h     0  r    1") and lines[0].endswith("not mining"), lines[0]
    assert lines[1].startswith("node.py status: ") and f"127.0.0.1:{a.port + 1}" in lines[1]  # one line
    assert all(len(line) <= 80 for line in lines)
