"""The simulator's error (kept apart so that every sim module may raise it)."""
from __future__ import annotations

from learningchain.core.errors import LearningChainError


class SimulationError(LearningChainError):
    """The simulated network broke an invariant (full nodes disagree, a valid
    block was refused, a round never closed)."""
