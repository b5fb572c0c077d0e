"""LearningChain: federated learning on a proof-of-work ledger.

The Python API (:mod:`learningchain.api`), loaded on first use so that
``import learningchain`` (and ``node.py``'s fast commands) stay light::

    import learningchain as lc
    res = lc.simulate(nodes=10, rounds=20, dataset="digits", model="mlp", aggregator="fedavg")
    rows = lc.rounds_table(res)            # pandas.DataFrame(rows)
    with lc.Network.local(n=4, rounds=3) as net:
        net.wait_round(3)
"""
from __future__ import annotations

__all__ = ["simulate", "rounds_table", "Results", "Network", "ConfigError", "LearningChainError"]


def __getattr__(name: str):
    if name in ("simulate", "rounds_table", "Results", "Network"):
        from learningchain import api
        return getattr(api, name)
    if name in ("ConfigError", "LearningChainError"):
        from learningchain.core import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'learningchain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
