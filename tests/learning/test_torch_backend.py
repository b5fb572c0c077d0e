"""The PyTorch backend (learning/models/torch_backend.py) and the torch half of
the model spec (spec.py) and of layout.py: genesis form, validation, G0 from
the layout alone, deterministic training, evaluation."""
import numpy as np
import pytest
import torch
from torch import nn

from learningchain.core.encoding import canonical_json, weights_digest
from learningchain.core.errors import ConfigError
from learningchain.learning import data
from learningchain.learning.models import ModelSpec, build_model, default_spec, layout
from learningchain.learning.models import torch_backend as tb

TINY_LAYOUT = (("fc0.bias", (3,)), ("fc0.weight", (3, 4)), ("fc1.bias", (2,)), ("fc1.weight", (2, 3)))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: more threads only contend for the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kw) -> ModelSpec:
    return tb.spec_with_layout(kw.pop("kind", "mlp"), kw.pop("task", "classification"), kw.pop("n_features", 4),
                               kw.pop("n_outputs", 2), **{"hidden": (3,), "epochs": 2, "batch_size": 8, "lr": 0.1, **kw})


def torch_spec(**kw) -> ModelSpec:
    base = dict(kind="mlp", task="classification", n_features=4, n_outputs=2, hidden=(3,), backend="torch",
                layout=TINY_LAYOUT)
    return ModelSpec(**{**base, **kw})


def blobs(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)).astype(np.float32) + 2.0 * y[:, None]
    return X, y


# --- the spec: genesis form and validation --------------------------------------------

def test_torch_spec_round_trips_through_its_genesis_form():
    spec = tiny()
    assert spec.layout == TINY_LAYOUT
    d = spec.to_dict()
    assert d["backend"] == "torch" and d["input_shape"] == []
    assert d["layout"] == [["fc0.bias", [3]], ["fc0.weight", [3, 4]], ["fc1.bias", [2]], ["fc1.weight", [2, 3]]]
    assert ModelSpec.from_dict(d) == spec
    canonical_json(d)  # ints, strings and lists only
    shuffled = {**d, "layout": list(reversed(d["layout"]))}
    assert ModelSpec.from_dict(shuffled).to_dict() == d  # any order in, sorted out


def test_cnn_spec_round_trips_with_its_input_shape():
    spec = default_spec("ct-phantoms", "cnn")
    d = spec.to_dict()
    assert d["input_shape"] == [1, 32, 32] and d["hidden"] == [8, 16, 32] and spec.label == "torch cnn"
    assert ModelSpec.from_dict(d) == spec


def test_a_numpy_spec_is_written_as_before():
    spec = default_spec("digits")
    d = spec.to_dict()
    assert set(d) == {"kind", "task", "n_features", "n_outputs", "hidden", "seed", "epochs", "batch_size",
                      "lr", "l2"}
    assert ModelSpec.from_dict(d) == spec == ModelSpec.from_dict({**d, "backend": "numpy"})
    assert spec.backend == "numpy" and spec.label == "mlp"


@pytest.mark.parametrize("changes,message", [
    ({"kind": "rnn"}, "torch model 'rnn' unknown"),
    ({"kind": "cnn", "hidden": (4, 8), "input_shape": (1, 2, 2)}, "cnn takes hidden"),
    ({"kind": "cnn", "hidden": (4, 8, 16), "input_shape": (4,)}, "cnn needs input_shape"),
    ({"kind": "cnn", "hidden": (4, 8, 16), "n_features": 36, "input_shape": (1, 6, 6)}, "multiples of 4"),
    ({"input_shape": (2, 3)}, "holds 6 values, not n_features 4"),
    ({"input_shape": (2, 0, 2)}, "input_shape must be positive"),
    ({"layout": ()}, "needs a layout of 1 to 1024"),
    ({"layout": tuple((f"a{i}", (1,)) for i in range(1025))}, "needs a layout of 1 to 1024"),
    ({"layout": (("fc0.bias", (3,)), ("fc0.bias", (3,)))}, "layout names must be unique"),
    ({"layout": (("fc0 bias", (3,)),)}, "must be 1-128 letters"),
    ({"layout": (("", (3,)),)}, "must be 1-128 letters"),
    ({"layout": (("x" * 129, (3,)),)}, "must be 1-128 letters"),
    ({"layout": (("fc0.bias", (3, 0)),)}, "shape must be 1 to 8 positive integers"),
    ({"layout": (("temperature", ()),)}, "make a scalar parameter shape"),
    ({"layout": (("fc0.bias", (1,) * 9),)}, "shape must be 1 to 8"),
    ({"layout": (("fc0.bias", (2**31,)),)}, "below 2"),
    ({"kind": "mlp", "hidden": ()}, "mlp needs at least one hidden"),
    ({"task": "regression"}, "regression needs n_outputs 1"),
    ({"backend": "jax"}, "backend 'jax' unknown"),
    ({"seed": 2**64}, r"seed must be an integer in \[0, 2\^64\)"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\^64\)"),
])
def test_torch_spec_validation(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        torch_spec(**changes)


def test_the_largest_seed_gives_a_g0_and_a_larger_one_is_refused_for_numpy_too():
    assert weights_digest(layout.initial_weights(tiny(seed=2**64 - 1)))
    with pytest.raises(ConfigError, match="seed must be an integer"):
        ModelSpec("mlp", "classification", 4, 2, (3,), seed=2**64)


def test_a_numpy_spec_refuses_a_layout_or_input_shape():
    for extra in ({"layout": TINY_LAYOUT}, {"input_shape": (4,)}):
        with pytest.raises(ConfigError, match="belong to the torch backend"):
            ModelSpec("mlp", "classification", 4, 2, (3,), **extra)


@pytest.mark.parametrize("layout_value,message", [
    ("fc0", "layout must be a list"),
    ([["fc0.bias"]], "each layout entry must be"),
    ([["fc0.bias", 3]], "each layout entry must be"),
    ([[3, [3]]], "each layout entry must be"),
    ([["fc0.bias", ["x"]]], "layout shape must be an integer"),
])
def test_from_dict_refuses_a_malformed_layout(layout_value, message):
    d = {**tiny().to_dict(), "layout": layout_value}
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_dict(d)


def test_a_user_architecture_name_is_a_valid_torch_kind():
    spec = torch_spec(kind="my_pkg.nets:make_net")
    assert ModelSpec.from_dict(spec.to_dict()).kind == "my_pkg.nets:make_net"
    with pytest.raises(ConfigError, match="not loaded in this process"):
        build_model(spec)


# --- the module against the layout ------------------------------------------------------

def test_a_module_that_differs_from_the_layout_is_refused():
    spec = torch_spec(hidden=(5,))  # the module has fc0 (5, 4), the layout (3, 4)
    with pytest.raises(ConfigError, match="do not match the genesis layout"):
        tb.TorchModel(spec)


def test_torch_model_needs_a_torch_spec():
    with pytest.raises(ConfigError, match="needs a torch spec"):
        tb.TorchModel(default_spec("digits"))


def test_module_layout_is_the_state_dict_floats_by_name():
    assert tb.module_layout(tb.MLP(4, (3,), 2)) == TINY_LAYOUT
    cnn = tb.CNN((1, 8, 8), (2, 4, 6), 3)
    assert dict(tb.module_layout(cnn)) == {"conv0.weight": (2, 1, 3, 3), "conv0.bias": (2,),
                                           "conv1.weight": (4, 2, 3, 3), "conv1.bias": (4,),
                                           "fc0.weight": (6, 4 * 2 * 2), "fc0.bias": (6,),
                                           "fc1.weight": (3, 6), "fc1.bias": (3,)}


def test_square_image():
    assert tb.square_image(64) == (1, 8, 8) and tb.square_image(1024) == (1, 32, 32)
    for bad in (63, 36):
        with pytest.raises(ConfigError, match="multiple of 4"):
            tb.square_image(bad)


# --- G0 -------------------------------------------------------------------------------

def test_g0_comes_from_the_layout_alone_and_is_pinned():
    spec = tiny(seed=7)
    g = tb.TorchModel(spec).initial_weights()
    again = layout.initial_weights(spec)
    assert list(g) == [n for n, _ in TINY_LAYOUT] == list(again)
    assert all(np.array_equal(g[n], again[n]) and g[n].dtype == np.float32 for n in g)
    assert weights_digest(g) == "cea3b571224fde2aa071626801ac2fda13e8a3d59a6538b8ead227e5398194d1"
    assert not g["fc0.bias"].any() and not g["fc1.bias"].any()
    bound = np.sqrt(6 / (4 + 3))  # fan_in = shape[1], fan_out = shape[0]
    assert 0 < np.abs(g["fc0.weight"]).max() <= bound
    assert weights_digest(layout.initial_weights(tiny(seed=8))) != weights_digest(g)
    assert layout.expected_shapes(spec) == {n: ("<f4", s) for n, s in TINY_LAYOUT}


def test_g0_of_a_convolution_uses_the_receptive_field():
    w = layout.layout_array(0, "conv0.weight", (8, 1, 3, 3))
    assert w.shape == (8, 1, 3, 3) and w.dtype == np.float32
    from learningchain.learning.models import network
    u = network.protocol_uniform(0, "conv0.weight", 72)
    expected = ((2.0 * u - 1.0) * np.sqrt(6.0 / (9 + 72))).astype(np.float32)
    assert np.array_equal(w.ravel(), expected)  # row-major over the full shape


def test_g0_vectors_are_zeros_except_scales_and_running_variances():
    assert layout.layout_array(0, "bn.weight", (4,)).tolist() == [1.0] * 4
    assert layout.layout_array(0, "bn.running_var", (4,)).tolist() == [1.0] * 4
    assert layout.layout_array(0, "bn.bias", (4,)).tolist() == [0.0] * 4
    assert layout.layout_array(0, "bn.running_mean", (4,)).tolist() == [0.0] * 4


# --- training and evaluation ---------------------------------------------------------

def test_training_is_deterministic_for_a_seed_and_moves_the_weights():
    spec = tiny()
    model = build_model(spec)
    X, y = blobs()
    g = model.initial_weights()
    before = {n: a.copy() for n, a in g.items()}
    a, b = model.train(g, X, y, seed=3), build_model(spec).train(g, X, y, seed=3)
    assert weights_digest(a) == weights_digest(b)
    assert all(np.array_equal(g[n], before[n]) for n in g)  # the caller's arrays untouched
    assert weights_digest(a) != weights_digest(g)
    assert weights_digest(model.train(g, X, y, seed=4)) != weights_digest(a)  # the batch order is the seed's
    assert all(a[n].dtype == np.float32 and a[n].shape == g[n].shape for n in g)


def test_evaluate_reports_the_classification_and_regression_metrics():
    X, y = blobs()
    model = build_model(tiny())
    metrics = model.evaluate(model.train(model.initial_weights(), X, y, seed=0), X, y)
    assert {"accuracy", "precision", "recall", "f1"} <= set(metrics) and metrics["accuracy"] > 0.8
    reg = build_model(tiny(task="regression", n_outputs=1))
    target = X.sum(axis=1)
    m = reg.evaluate(reg.train(reg.initial_weights(), X, target, seed=0), X, target)
    assert set(m) == {"rmse", "mae", "r2"} and np.isfinite(m["rmse"])
    assert reg.predict(reg.initial_weights(), X).shape == (len(X),)


def test_a_torch_mlp_learns_digits():
    ds = data.load_dataset("digits", 0)
    spec = tb.spec_with_layout("mlp", "classification", 64, 10, hidden=(16,), epochs=5, batch_size=16, lr=0.1)
    model = build_model(spec)
    g = model.initial_weights()
    chance = model.evaluate(g, ds.X_test, ds.y_test)["accuracy"]
    trained = model.evaluate(model.train(g, ds.X_train, ds.y_train, seed=0), ds.X_test, ds.y_test)
    assert chance < 0.3 and trained["accuracy"] > 0.85


def test_a_cnn_trains_on_images():
    spec = tb.spec_with_layout("cnn", "classification", 64, 3, input_shape=(1, 8, 8), hidden=(2, 3, 4),
                               epochs=1, batch_size=8, lr=0.05)
    model = build_model(spec)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(24, 64)).astype(np.float32), rng.integers(0, 3, 24)
    w = model.train(model.initial_weights(), X, y, seed=0)
    assert set(w) == {n for n, _ in spec.layout} and weights_digest(w) != weights_digest(model.initial_weights())
    assert model.predict(w, X).shape == (24,)


def test_bad_inputs_are_config_errors():
    model = build_model(tiny())
    g = model.initial_weights()
    X, y = blobs(n=10)
    with pytest.raises(ConfigError, match="model expects"):
        model.train({k: v for k, v in g.items() if k != "fc1.bias"}, X, y, seed=0)
    with pytest.raises(ConfigError, match="has shape"):
        model.train({**g, "fc0.weight": g["fc0.weight"].T}, X, y, seed=0)
    with pytest.raises(ConfigError, match=r"model expects \(n, 4\)"):
        model.predict(g, X[:, :3])
    with pytest.raises(ConfigError, match="labels must lie in 0..1"):
        model.train(g, X, y + 1, seed=0)
    with pytest.raises(ConfigError, match="empty"):
        model.train(g, X[:0], y[:0], seed=0)


def test_sample_level_dp_is_refused():
    model = build_model(tiny())
    with pytest.raises(ConfigError, match="numpy backend only"):
        model.train_dp(model.initial_weights(), *blobs(n=8), seed=0)
    with pytest.raises(ConfigError, match="numpy backend only"):
        model.per_example_grads(model.initial_weights(), *blobs(n=8))


# --- state_dict and norm layers -------------------------------------------------------

class _NormNet(nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.fc0 = nn.Linear(n_features, 5)
        self.bn = nn.BatchNorm1d(5)
        self.fc1 = nn.Linear(5, n_outputs)

    def forward(self, x):
        return self.fc1(torch.relu(self.bn(self.fc0(x))))


def test_state_dict_round_trips_and_norm_buffers_are_arrays():
    tb.register("test_torch_backend_nets:norm_net", _NormNet)
    spec = tb.spec_with_layout("test_torch_backend_nets:norm_net", "classification", 4, 2, epochs=1,
                               batch_size=8, lr=0.1)
    names = [n for n, _ in spec.layout]
    assert "bn.running_var" in names and "bn.num_batches_tracked" not in names  # integer buffers stay local
    model = build_model(spec)
    g = model.initial_weights()
    assert g["bn.weight"].tolist() == [1.0] * 5 and g["bn.running_var"].tolist() == [1.0] * 5
    assert not g["bn.running_mean"].any()
    w = model.train(g, *blobs(), seed=0)
    assert not np.array_equal(w["bn.running_mean"], g["bn.running_mean"])  # the running stats are trained too
    state = model.state_dict(w)
    assert set(state) == set(names) | {"bn.num_batches_tracked"}
    fresh = _NormNet(4, 2)
    fresh.load_state_dict(state)
    back = tb.module_layout(fresh)
    assert back == spec.layout
    assert all(np.array_equal(fresh.state_dict()[n].numpy(), w[n]) for n in names)


def test_register_refuses_a_bad_name():
    with pytest.raises(ConfigError, match="package.module:factory"):
        tb.register("not a name", _NormNet)


class _ScalarNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.fc(x) / self.temperature


def test_a_module_with_a_scalar_parameter_is_refused_clearly():
    """weights_digest would summarise a 0-d array as shape [1]: the layout has none."""
    tb.register("test_torch_backend_nets:scalar_net", _ScalarNet)
    with pytest.raises(ConfigError, match=r"layout temperature: .*make a scalar parameter shape \[1\]"):
        tb.spec_with_layout("test_torch_backend_nets:scalar_net", "classification", 4, 2)


def test_a_layout_over_the_parameter_cap_is_refused_before_anything_is_allocated():
    from learningchain.core.errors import ConfigError
    from learningchain.learning.models.spec import MAX_PARAMETERS, ModelSpec
    with pytest.raises(ConfigError, match="parameters, more than"):
        ModelSpec("mlp", "classification", 4, 2, (3,), backend="torch",
                  layout=(("fc.weight", (1 << 30, 1 << 20)),))
    ok = ModelSpec("mlp", "classification", 4, 2, (3,), backend="torch", layout=(("fc.weight", (MAX_PARAMETERS, 1)),))
    assert ok.layout == (("fc.weight", (MAX_PARAMETERS, 1)),)
