"""The adversarial suite against live networks: every scenario of
``tests/adversary/`` (each starts its own small network of ``node.py run``
processes on 127.0.0.1 and attacks it), then one table: attack, what it tried,
what the network did, whether honest rounds kept closing and every node kept
one chain and one model.

    .venv/bin/python bench/hostile.py [--only NAME,...] [--json FILE]

Prints figures; asserts nothing (the tests in tests/system/test_adversary.py assert
the same scenarios).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.adversary import Outcome, load_all  # noqa: E402


def yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--json", default="", help="also write the rows as JSON here")
    args = ap.parse_args()
    scenarios = load_all()
    names = [n for n in args.only.split(",") if n] or sorted(scenarios)
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(sorted(scenarios))}")
        return 2
    rows: list[tuple[Outcome, float]] = []
    for name in names:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"hostile-{name}-") as tmp:
            try:
                outcome = scenarios[name](Path(tmp))
            except Exception as exc:  # a scenario that breaks is a row, not the end of the table
                traceback.print_exc()
                outcome = Outcome(name, "(scenario failed to run)", f"{type(exc).__name__}: {exc}",
                                  False, False, False)
        rows.append((outcome, time.monotonic() - t0))
        print(f"  {name}: {'pass' if outcome.passed else 'FAIL'} ({rows[-1][1]:.0f} s)", flush=True)
    print()
    print("| attack | what it tried | what the network did | honest rounds kept closing "
          "| one chain, one model | own checks | s |")
    print("|---|---|---|---|---|---|---|")
    for o, secs in rows:
        print(f"| {o.attack} | {o.tried} | {o.network_did} | {yes(o.rounds_kept_closing)} "
              f"| {yes(o.one_chain_one_model)} | {yes(o.ok)} | {secs:.0f} |")
    passed = sum(o.passed for o, _ in rows)
    print(f"\n{passed} of {len(rows)} attacks withstood")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**o.__dict__, "seconds": round(s, 1)} for o, s in rows], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
