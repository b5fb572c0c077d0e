"""A `node.py run` process configured the way a container is: no flags, its
settings in LC_* variables and a TOML file (learningchain/cli/run_config.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from learningchain.cli import run_config
from learningchain.cli.processes import free_port
from tests.served import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_a_node_process_starts_from_the_environment_and_a_config_file(tmp_path):
    """The container's way: `node.py run` with no flags, its settings in LC_* and a
    TOML file; the running node serves on the port from the environment and gives
    the advertised URL from the file (no peers: nothing but 127.0.0.1 is contacted)."""
    port = free_port()
    conf = tmp_path / "node.toml"
    conf.write_text(f'data-dir = "{tmp_path / "n0"}"\nport = 1\nadvertise_url = "http://node7.test:5000"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") or k in run_config.LOCALE_VARS}
    env.update(LC_CONFIG=str(conf), LC_PORT=str(port), LC_MINE="no")
    proc = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "run"], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def peers():
        try:
            return requests.get(f"http://127.0.0.1:{port}/peers", timeout=2).json()
        except requests.RequestException:
            assert proc.poll() is None, proc.communicate()[0]
            return None
    try:
        doc = wait_for(peers, seconds=120, what="the node to serve on LC_PORT")
        assert doc["self"] == "http://node7.test:5000" and doc["peers"] == []
        assert (tmp_path / "n0" / "node_key.pem").exists()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "on http://node7.test:5000" in out, out
