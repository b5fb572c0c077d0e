"""``node.py run``'s flags from LC_* variables and a TOML config file (cli/run_config.py):
precedence, switches, lists, refusals naming their source, --help, --advertise-url."""
from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from learningchain.cli import main as cli
from learningchain.cli import run_config
from learningchain.cli.argtypes import complete


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No LC_* variable of the machine running the tests leaks in (locale ones stay)."""
    import os
    for name in list(os.environ):
        if name.startswith("LC_") and name not in run_config.LOCALE_VARS:
            monkeypatch.delenv(name)


def parse(argv) -> argparse.Namespace:
    return cli.build_parser().parse_args(["run", *argv])


def refused(argv) -> str:
    """The one line ``node.py run ARGV`` is refused with (exit status 2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, err.getvalue()
    return lines[0]


def write(tmp_path, text: str, name: str = "node.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in complete(cli.build_parser())._actions if a.dest == "command")
    return sub.choices["run"]


def test_command_line_beats_environment_beats_config_file_beats_default(tmp_path, monkeypatch):
    conf = write(tmp_path, 'data-dir = "/from/file"\nport = 5001\nhost = "10.0.0.1"\nworkers = 3\n')
    args = parse(["--config", conf])
    assert (args.data_dir, args.port, args.host, args.workers) == ("/from/file", 5001, "10.0.0.1", 3)
    assert args.dp_rounds == 30 and args.topk_fraction == 0.1 and args.mine is False  # defaults
    monkeypatch.setenv("LC_PORT", "5002")
    monkeypatch.setenv("LC_HOST", "10.0.0.2")
    args = parse(["--config", conf])
    assert (args.data_dir, args.port, args.host, args.workers) == ("/from/file", 5002, "10.0.0.2", 3)
    args = parse(["--config", conf, "--port", "5003", "--workers", "4"])
    assert (args.data_dir, args.port, args.host, args.workers) == ("/from/file", 5003, "10.0.0.2", 4)
    # the file may come from LC_CONFIG too; --config wins over it
    other = write(tmp_path, 'data-dir = "/other"\nport = 6000\n', "other.toml")
    monkeypatch.delenv("LC_PORT")
    monkeypatch.setenv("LC_CONFIG", other)
    assert (parse([]).data_dir, parse([]).port) == ("/other", 6000)
    assert parse(["--config", conf]).data_dir == "/from/file"


def test_required_flags_may_come_from_the_environment_and_are_named_with_it(monkeypatch):
    monkeypatch.setenv("LC_DATA_DIR", "/data")
    monkeypatch.setenv("LC_PORT", "5000")
    args = parse([])
    assert (args.data_dir, args.port, args.func.__name__) == ("/data", 5000, "cmd_run")
    monkeypatch.delenv("LC_PORT")
    line = refused([])
    assert "required: --port (or LC_PORT, or port in the --config file)" in line and "--data-dir" not in line


def test_switches_take_words_and_toml_booleans(tmp_path, monkeypatch):
    base = ["--data-dir", "d", "--port", "5000"]
    for word, on in (("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("no", False)):
        monkeypatch.setenv("LC_MINE", word)
        assert parse(base).mine is on, word
    monkeypatch.setenv("LC_MINE", "0")
    assert parse([*base, "--mine"]).mine is True  # the command line still wins
    monkeypatch.delenv("LC_MINE")
    assert parse([*base, "--config", write(tmp_path, "mine = true\nlocal_baseline = true\n")]).mine is True
    assert parse([*base, "--config", write(tmp_path, "mine = false\n")]).mine is False
    monkeypatch.setenv("LC_MINE", "")  # an empty variable (a template's ${MINE:-}) is unset
    assert parse(base).mine is False
    monkeypatch.setenv("LC_MINE", "maybe")
    assert refused(base).endswith("LC_MINE: 'maybe' is not a boolean (1/true/yes or 0/false/no) "
                                  "(see 'node.py run --help')")


def test_peer_lists_from_the_environment_and_a_toml_array(tmp_path, monkeypatch):
    base = ["--data-dir", "d", "--port", "5000"]
    monkeypatch.setenv("LC_PEERS", "http://127.0.0.1:5001, http://127.0.0.1:5002/")
    assert parse(base).peers == ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]  # through argtypes.peer_urls
    monkeypatch.delenv("LC_PEERS")
    conf = write(tmp_path, 'peers = ["http://127.0.0.1:5001", "https://node3.lab:5000/"]\n')
    assert parse([*base, "--config", conf]).peers == ["http://127.0.0.1:5001", "https://node3.lab:5000"]
    bad = write(tmp_path, 'peers = ["http://127.0.0.1:5001", "ftp://x"]\n', "bad.toml")
    assert f"{bad}: peers: url must be http(s)://host[:port]" in refused([*base, "--config", bad])


def test_unknown_keys_bad_values_and_bad_files_are_one_line_naming_their_source(tmp_path, monkeypatch):
    base = ["--data-dir", "d"]
    conf = write(tmp_path, 'prot = 5000\n')
    assert f"{conf}: unknown key 'prot': not a flag of 'node.py run'" in refused([*base, "--config", conf])
    conf = write(tmp_path, 'port = 99999\n')
    assert f"{conf}: port: '99999' is not a TCP port (1..65535)" in refused([*base, "--config", conf])
    conf = write(tmp_path, 'port = 5000\ncompression = "zip"\n')
    assert f"{conf}: compression: invalid choice: 'zip'" in refused([*base, "--config", conf])
    conf = write(tmp_path, 'port = 5000\nskip-threshold = 1\nskip_threshold = 2\n')
    assert "sets --skip-threshold again" in refused([*base, "--config", conf])
    conf = write(tmp_path, '[run]\nport = 5000\n')
    assert "[run] is a table: give the settings at the top level" in refused([*base, "--config", conf])
    conf = write(tmp_path, 'port = \n')
    assert f"{conf}: not a TOML file" in refused([*base, "--config", conf])
    assert "--config nowhere.toml: no such config file" in refused([*base, "--config", "nowhere.toml"])
    monkeypatch.setenv("LC_PORT", "x")
    assert "error: LC_PORT: 'x' is not an integer" in refused(base)
    monkeypatch.setenv("LC_PORT", "5000")
    monkeypatch.setenv("LC_DP_MODE", "everything")
    assert "LC_DP_MODE: invalid choice: 'everything' (choose from 'node', 'sample', 'distributed')" in refused(base)


def test_every_flag_is_covered_including_flags_added_later(monkeypatch):
    """Built from the parser's actions when it parses: a flag another module adds
    to run (after add_flags) is settable too, through its own type and choices."""
    p = run_parser()
    p.add_argument("--later-format", choices=("text", "json"), default="text", help="later lines")
    p.add_argument("--later-allow", action="append", default=None, help="later hosts")
    monkeypatch.setenv("LC_DATA_DIR", "d")
    monkeypatch.setenv("LC_PORT", "5000")
    monkeypatch.setenv("LC_LATER_FORMAT", "json")
    monkeypatch.setenv("LC_LATER_ALLOW", "10.0.0.1,10.0.0.2")
    args = p.parse_args([])
    assert args.later_format == "json" and args.later_allow == ["10.0.0.1", "10.0.0.2"]
    assert args.data_dir == "d" and args.port == 5000


def test_run_help_names_every_variable_and_the_precedence():
    p = run_parser()
    text = " ".join(p.format_help().split())
    for action in run_config.settable(p):
        assert f"[env: {run_config.env_name(action)}]" in text, action.option_strings
    assert "[env: LC_DATA_DIR]" in text and "[env: LC_MINE]" in text and "LC_CONFIG" in text
    assert "Precedence: command line > environment > config file > default" in text
    # no flag of run is read from a POSIX locale variable (LC_ALL, LC_TIME, ...)
    assert not {run_config.env_name(a) for a in run_config.settable(p)} & run_config.LOCALE_VARS


def test_the_environment_reaches_the_command(tmp_path, monkeypatch):
    """main(["run"]) with its flags in the environment checks them as its own."""
    monkeypatch.setenv("LC_DATA_DIR", str(tmp_path / "no" / "such"))
    monkeypatch.setenv("LC_PORT", "5999")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["run"])
    assert code == 2 and "its parent" in err.getvalue() and str(tmp_path / "no") in err.getvalue()


# --- --advertise-url ----------------------------------------------------------------

def test_advertise_url_is_a_reachable_peer_url(monkeypatch):
    base = ["--data-dir", "d", "--port", "5000"]
    assert parse([*base, "--advertise-url", "https://Node3.lab:5000/"]).advertise_url == "https://node3.lab:5000"
    assert parse([*base, "--advertise-url", "node3.lab:5000"]).advertise_url == "http://node3.lab:5000"
    assert parse(base).advertise_url is None
    assert "without a path" in refused([*base, "--advertise-url", "http://node3.lab:5000/api"])
    assert "peers cannot reach a wildcard address" in refused([*base, "--advertise-url", "http://0.0.0.0:5000"])
    monkeypatch.setenv("LC_ADVERTISE_URL", "http://[::]:5000")
    assert "LC_ADVERTISE_URL: 'http://[::]:5000': peers cannot reach a wildcard address" in refused(base)


def test_a_wildcard_host_without_advertise_url_is_refused_before_anything_is_written(tmp_path):
    data_dir = tmp_path / "n0"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["run", "--data-dir", str(data_dir), "--port", "5999", "--host", "0.0.0.0"])
    assert code == 2 and not data_dir.exists()
    line, = err.getvalue().strip().splitlines()
    assert "--host 0.0.0.0 listens on every address" in line and "--advertise-url" in line

