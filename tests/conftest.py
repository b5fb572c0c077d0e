"""Test-run set-up shared by every test module.

Under pytest-xdist (``make test`` runs ``-n 2``) each worker picks the ports of
the nodes it starts from its own slice of 20000..32767
(``learningchain.cli.processes.PORT_RANGE_ENV``), so two workers never hand one
port to two nodes; node processes and demos started by a test inherit it.
"""
from __future__ import annotations

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _worker.startswith("gw") and _count > 1:
    _index = int(_worker[2:])
    _low, _high = 20000, 32768
    _size = (_high - _low) // _count
    os.environ["LEARNINGCHAIN_PORT_RANGE"] = f"{_low + _index * _size}-{_low + (_index + 1) * _size}"
