"""Loading a user's PyTorch architecture, named ``package.module:factory`` in the
genesis model spec or on ``--model``: the shells (node, sim, cli) import it
here and register it with the torch backend, since the pure layers load no code.

The module is imported as ``python -m`` would find it: from the working
directory (appended to ``sys.path`` if missing) or ``PYTHONPATH``. The factory is
called with the keywords it accepts among ``input_shape``, ``n_features``,
``n_outputs`` and ``hidden`` (``Net()`` with none is fine) and must return a
``torch.nn.Module``.
"""
from __future__ import annotations

import importlib
import os
import sys

from learningchain.core.errors import ConfigError
from learningchain.learning.models import is_factory, load_torch


def ensure(kind: str) -> None:
    """Register ``kind`` with the torch backend if it names a user's factory (a
    no-op for the built-in models, and when already registered)."""
    if not is_factory(kind):
        return
    tb = load_torch()
    if tb.registered(kind):
        return
    module_name, _, attr = kind.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:  # appended: a json.py or ssl.py lying there must not shadow the real ones
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"model {kind}: cannot import {module_name} ({exc}); run from the directory that "
                          f"holds it or add it to PYTHONPATH") from None
    except Exception as exc:  # the user's module raised while importing
        raise ConfigError(f"model {kind}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"model {kind}: {module_name} has no callable {attr!r}")
    tb.register(kind, factory)
