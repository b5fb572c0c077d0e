"""Models: spec round trip and refusal, deterministic G0 and training, learning."""
from __future__ import annotations

import numpy as np
import pytest

from learningchain.core.encoding import canonical_json, weights_digest
from learningchain.core.errors import ConfigError
from learningchain.learning.models import ModelSpec, build_model, default_spec
from learningchain.learning.data import load_dataset


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_spec_to_dict_is_canonical_and_round_trips():
    spec = default_spec("digits", "mlp")
    d = spec.to_dict()
    canonical_json(d)  # no floats
    assert d["lr"] == "0.2" and d["l2"] == "0.003" and d["hidden"] == [32]
    assert ModelSpec.from_dict(d) == spec
    assert ModelSpec.from_dict({**d, "lr": 0.2, "epochs": "10"}) == spec
    assert ModelSpec("linear", "regression", 3, 1, lr=0.00001).to_dict()["lr"] == "0.00001"


@pytest.mark.parametrize("patch,match", [
    ({"kind": "cnn"}, "kind 'cnn' unknown"),
    ({"kind": "linear", "hidden": []}, "cannot do 'classification'"),
    ({"n_features": 0}, "n_features must be a positive integer"),
    ({"batch_size": -3}, "batch_size must be a positive integer"),
    ({"hidden": [32, 0]}, "hidden widths"),
    ({"hidden": []}, "mlp needs at least one hidden"),
    ({"lr": "fast"}, "lr must be a decimal number"),
    ({"lr": "-0.1"}, "lr must be a positive"),
    ({"extra": 1}, "unknown field"),
    ({"n_outputs": 1}, "classification needs n_outputs >= 2"),
])
def test_spec_refuses_bad_values(patch, match):
    d = {**default_spec("digits", "mlp").to_dict(), **patch}
    with pytest.raises(ConfigError, match=match):
        ModelSpec.from_dict(d)


def test_spec_missing_field():
    d = default_spec("digits").to_dict()
    del d["n_features"]
    with pytest.raises(ConfigError, match="missing field 'n_features'"):
        ModelSpec.from_dict(d)


@pytest.mark.parametrize("dataset,kind", [("digits", "mlp"), ("digits", "softmax"),
                                          ("diabetes", "linear"), ("diabetes", "mlp")])
def test_initial_weights_deterministic_and_shapes(dataset, kind):
    spec = default_spec(dataset, kind)
    a, b = build_model(spec).initial_weights(), build_model(spec).initial_weights()
    assert weights_digest(a) == weights_digest(b)
    shapes = build_model(spec).expected_shapes()
    assert list(a) == sorted(shapes)
    for name, arr in a.items():
        assert (arr.dtype.str, arr.shape) == shapes[name]
    assert shapes["W0"][1] == (spec.n_features, spec.hidden[0] if spec.hidden else spec.n_outputs)


def test_seed_changes_mlp_init():
    a = build_model(default_spec("digits", "mlp", seed=0)).initial_weights()
    b = build_model(default_spec("digits", "mlp", seed=1)).initial_weights()
    assert weights_digest(a) != weights_digest(b)


def test_train_deterministic_and_input_untouched(digits):
    model = build_model(default_spec("digits", "mlp"))
    g = model.initial_weights()
    before = weights_digest(g)
    X, y = digits.X_train[:300], digits.y_train[:300]
    w1, w2 = model.train(g, X, y, seed=7), model.train(g, X, y, seed=7)
    assert weights_digest(w1) == weights_digest(w2)
    assert weights_digest(model.train(g, X, y, seed=8)) != weights_digest(w1)
    assert weights_digest(g) == before
    assert all(a.dtype == np.float32 for a in w1.values())


def test_mlp_and_softmax_learn_digits(digits):
    for kind, floor in (("mlp", 0.93), ("softmax", 0.93)):
        model = build_model(default_spec("digits", kind))
        w = model.initial_weights()
        untrained = model.evaluate(w, digits.X_test, digits.y_test)["accuracy"]
        for r in range(3):
            w = model.train(w, digits.X_train, digits.y_train, seed=r)
        m = model.evaluate(w, digits.X_test, digits.y_test)
        assert set(m) == {"accuracy", "precision", "recall", "f1"}
        assert m["accuracy"] > floor > untrained


def test_linear_regression_close_to_least_squares():
    from sklearn.linear_model import LinearRegression
    ds = load_dataset("diabetes")
    model = build_model(default_spec("diabetes", "linear"))
    w = model.initial_weights()
    for r in range(10):
        w = model.train(w, ds.X_train, ds.y_train, seed=r)
    m = model.evaluate(w, ds.X_test, ds.y_test)
    assert set(m) == {"rmse", "mae", "r2"}
    ref = LinearRegression().fit(ds.X_train, ds.y_train).predict(ds.X_test)
    ref_rmse = float(np.sqrt(np.mean((ref - ds.y_test) ** 2)))
    assert m["rmse"] < 1.02 * ref_rmse
    assert model.predict(w, ds.X_test).shape == (len(ds.y_test),)


def test_mlp_regression_learns():
    ds = load_dataset("diabetes")
    model = build_model(default_spec("diabetes", "mlp"))
    w = model.initial_weights()
    for r in range(10):
        w = model.train(w, ds.X_train, ds.y_train, seed=r)
    assert model.evaluate(w, ds.X_test, ds.y_test)["rmse"] < 65.0   # mean predictor: 70.5


def test_l2_shrinks_weights(digits):
    base = default_spec("digits", "softmax")
    plain = build_model(base)
    reg = build_model(ModelSpec(**{**base.__dict__, "l2": 0.1}))
    g = plain.initial_weights()
    wp = plain.train(g, digits.X_train, digits.y_train, seed=0)
    wr = reg.train(g, digits.X_train, digits.y_train, seed=0)
    assert np.linalg.norm(wr["W0"]) < np.linalg.norm(wp["W0"])


def test_bad_inputs_are_config_errors(digits):
    model = build_model(default_spec("digits", "mlp"))
    g = model.initial_weights()
    with pytest.raises(ConfigError, match="model expects"):
        model.train(g, digits.X_train[:, :10], digits.y_train, seed=0)
    with pytest.raises(ConfigError, match="labels"):
        model.train(g, digits.X_train[:5], np.array([0, 1, 2, 3, 10]), seed=0)
    bad = dict(g)
    bad["W0"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ConfigError, match="shape"):
        model.predict(bad, digits.X_test)


def test_classification_metrics_equal_scikit_learns_bit_for_bit():
    """The NumPy metrics (every update carries them: 0.06 ms instead of 2.6 ms)
    give exactly scikit-learn's accuracy and macro P/R/F1 with zero_division=0,
    also with labels only predicted or only true, and one class."""
    import numpy as np
    from sklearn import metrics
    from learningchain.learning.models.model import classification_metrics
    rng = np.random.default_rng(7)
    cases = [(np.array([3, 3]), np.array([3, 3])), (np.array([0, 1, 2]), np.array([5, 5, 5]))]
    for _ in range(300):
        n, c = int(rng.integers(1, 300)), int(rng.integers(1, 12))
        y = rng.integers(0, c, n)
        cases.append((y, rng.integers(0, c + int(rng.integers(0, 3)), n)))
        cases.append((y, np.where(rng.random(n) < 0.1, 0, y)))
    for y, p in cases:
        pr, rc, f1, _ = metrics.precision_recall_fscore_support(y, p, average="macro", zero_division=0)
        want = {"accuracy": float(metrics.accuracy_score(y, p)), "precision": float(pr), "recall": float(rc),
                "f1": float(f1)}
        assert classification_metrics(y, p) == want
