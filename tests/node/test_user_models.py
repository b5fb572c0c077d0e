"""A user's own PyTorch architecture, ``package.module:factory``: written to a
directory, loaded from the working directory by user_models.ensure, built and
trained; every failure is a one-line ConfigError."""
import itertools
import sys
import textwrap

import numpy as np
import pytest

from learningchain.core.errors import ConfigError
from learningchain.learning.models import ModelSpec, build_model
from learningchain.learning.models import torch_backend as tb
from learningchain.node import user_models

_names = itertools.count()

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, 6), nn.ReLU(), nn.Linear(6, n_outputs))

    def forward(self, x):
        return self.body(x)


def make(n_features, n_outputs):
    return Net(n_features, n_outputs)


def make_any(**offered):
    return Net(offered["n_features"], offered["n_outputs"])


def make_plain():
    return Net(4, 2)


def broken(n_features):
    raise ValueError("no such width")


def not_a_module():
    return [1, 2, 3]


NOT_CALLABLE = 3
"""


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A fresh module name in tmp_path (modules are cached per process), the cwd there."""
    name = f"user_nets_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(NET))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(sys.path))  # ensure() adds the cwd: undo it after
    return name


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("factory", ["make", "make_any", "make_plain"])
def test_a_user_factory_is_loaded_built_and_trained(user_dir, factory):
    kind = f"{user_dir}:{factory}"
    user_models.ensure(kind)
    assert tb.registered(kind)
    user_models.ensure(kind)  # a second call is a no-op
    spec = tb.spec_with_layout(kind, "classification", 4, 2, epochs=1, batch_size=8, lr=0.1)
    assert [n for n, _ in spec.layout] == ["body.0.bias", "body.0.weight", "body.2.bias", "body.2.weight"]
    model = build_model(spec)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 4)).astype(np.float32), rng.integers(0, 2, 16)
    w = model.train(model.initial_weights(), X, y, seed=0)
    assert set(model.evaluate(w, X, y)) >= {"accuracy"}


def test_built_in_models_need_no_loading():
    for kind in ("mlp", "cnn", "softmax"):
        user_models.ensure(kind)  # no import, no error
    assert not tb.registered("mlp")


def test_a_missing_module_is_a_config_error(user_dir):
    with pytest.raises(ConfigError, match="cannot import no_such_module_xyz") as exc:
        user_models.ensure("no_such_module_xyz:make")
    assert "PYTHONPATH" in one_line(exc)


def test_a_missing_attribute_is_a_config_error(user_dir):
    for attr in ("nope", "NOT_CALLABLE"):
        with pytest.raises(ConfigError, match=f"has no callable '{attr}'") as exc:
            user_models.ensure(f"{user_dir}:{attr}")
        one_line(exc)


def test_a_module_that_raises_on_import_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "user_raises_on_import.py").write_text("raise RuntimeError('bad config')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(sys.path))
    with pytest.raises(ConfigError, match="importing user_raises_on_import failed: RuntimeError: bad config") as exc:
        user_models.ensure("user_raises_on_import:make")
    one_line(exc)


@pytest.mark.parametrize("factory,message", [
    ("broken", "the factory failed: ValueError: no such width"),
    ("not_a_module", "the factory returned list, not a torch.nn.Module"),
])
def test_a_factory_that_fails_is_a_config_error(user_dir, factory, message):
    """At genesis (reading the layout off the module) and when a node builds the model."""
    kind = f"{user_dir}:{factory}"
    user_models.ensure(kind)
    with pytest.raises(ConfigError, match=message) as exc:
        tb.spec_with_layout(kind, "classification", 4, 2)
    assert one_line(exc).startswith(f"model {kind}: ")
    spec = ModelSpec(kind, "classification", 4, 2, backend="torch", layout=(("w", (2, 4)),))
    with pytest.raises(ConfigError, match=message) as exc:
        build_model(spec)
    one_line(exc)
