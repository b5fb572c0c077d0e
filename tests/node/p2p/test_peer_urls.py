"""Peer URLs (peer_urls.py): which strings name a peer, and ``--peers`` on the
command line."""
from __future__ import annotations

import pytest

from learningchain.node.p2p.peer_urls import check_peer_url





def test_peer_url_syntax():
    assert check_peer_url("http://10.0.0.1:5000") is None
    assert check_peer_url("https://example.org") is None
    for bad in ("ftp://x", "http://", "x", "http://a:99999", "http://u:p@h:1", None):
        assert check_peer_url(bad) is not None

def test_bad_peer_urls_on_the_command_line_are_an_error(tmp_path, capsys):
    from learningchain.cli import main as cli
    from learningchain.node.p2p.peer_urls import parse_peer_list
    from tests.cli.test_main import assert_one_line_error, node_py
    proc = node_py("run", "--data-dir", str(tmp_path / "d"), "--port", "1", "--peers",
                   "http://127.0.0.1:5001,ftp://x", timeout=60)  # a real process: one line, exit 2 (usage)
    line = assert_one_line_error(proc, 2)
    assert line.startswith("node.py run: error: argument --peers: url must be http(s)://host[:port], "
                           "got 'ftp://x'"), line
    for bad in ("127.0.0.1:5001", "http://127.0.0.1:99999", "http://u:p@127.0.0.1:1"):
        with pytest.raises(SystemExit) as refused:
            cli.main(["run", "--data-dir", str(tmp_path / "d"), "--port", "1", "--peers", bad])
        err = capsys.readouterr().err
        assert refused.value.code == 2, err
        assert err.startswith("node.py run: error: argument --peers: ") and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()  # refused before anything was written
    assert parse_peer_list(" http://127.0.0.1:5001/ ,, https://h:1") == ["http://127.0.0.1:5001", "https://h:1"]
