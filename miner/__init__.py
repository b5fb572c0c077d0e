"""Standalone proof-of-work miner: the search (:mod:`miner.pow`) and an HTTP
client that mines for a node (:mod:`miner.client`, ``python -m miner``)."""
from miner.pow import MineResult, Miner, format_rate, mine_header, search

__all__ = ["MineResult", "Miner", "format_rate", "mine_header", "search"]
