"""learningchain.cli.processes: free ports for node processes."""
from __future__ import annotations


def test_free_port_stays_in_the_range_the_environment_names(monkeypatch):
    """Parallel test workers (tests/conftest.py) and anyone else can narrow the
    choice: every port comes from LEARNINGCHAIN_PORT_RANGE; a malformed value is ignored."""
    from learningchain.cli.processes import PORT_RANGE_ENV, free_port
    monkeypatch.setenv(PORT_RANGE_ENV, "23000-23050")
    assert all(23000 <= free_port() < 23050 for _ in range(50))
    monkeypatch.setenv(PORT_RANGE_ENV, "not-a-range")
    assert 20000 <= free_port() < 65536
