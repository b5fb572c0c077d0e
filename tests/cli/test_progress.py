"""Progress bars (learningchain/cli/progress.py): on stderr, only on a terminal,
and the rows printed meanwhile reach stdout unchanged."""
from __future__ import annotations

import io
import json
import re
import sys

from learningchain.cli.main import main
from learningchain.cli.progress import Progress, wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_unless_stderr_is_a_terminal(monkeypatch, capsys):
    assert not wanted()  # pytest captures stderr: no terminal
    bar = Progress("round", "sim", total=3)
    bar.write("row 1")
    bar.update()
    bar.close()
    out, err = capsys.readouterr()
    assert (out, err) == ("row 1\n", "")
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert wanted() and not wanted(quiet=True)


def test_on_a_terminal_the_bar_goes_to_stderr_and_rows_to_stdout(monkeypatch, capsys):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with Progress("round", "sim", total=3, delay=0) as bar:
        for r in range(3):
            bar.write(f"row {r}")
            bar.update()
    assert capsys.readouterr().out == "row 0\nrow 1\nrow 2\n"
    drawn = term.getvalue()
    assert "sim:" in drawn and "/3 " in drawn and "round/s" in drawn and "row" not in drawn
    term2 = Terminal()
    monkeypatch.setattr(sys, "stderr", term2)
    with Progress("block", "verify", delay=0) as bar:
        bar.goto(50, 200)
    assert "verify:" in term2.getvalue() and "/200 " in term2.getvalue()


def test_simulate_prints_the_same_stdout_with_and_without_a_terminal(tmp_path, monkeypatch, capsys):
    def run(name):
        assert main(["simulate", "--nodes", "2", "--rounds", "3", "--model", "softmax", "--no-baselines",
                     "--out", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out.replace(str(tmp_path / name), "OUT")
        return [re.sub(r"\d+\.\d+s", "T", line) for line in out.splitlines()]  # timings differ
    plain = run("a")
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert run("b") == plain and len(plain) == 7
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [e["round"] for e in res["rounds"]] == [1, 2, 3]
