"""Learning targets without the chain: plain FedAvg in a loop vs centralized.

Prints: digits MLP(32), 4 IID nodes, 10 rounds of FedAvg vs the same model
trained centrally for the same number of epochs; diabetes linear regression
vs sklearn LinearRegression; the time of one local training.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

from learningchain.learning.aggregation import Update, aggregate  # noqa: E402
from learningchain.learning.data import load_dataset, partition  # noqa: E402
from learningchain.learning.models import build_model, default_spec  # noqa: E402


def fedavg_rounds(model, parts, rounds: int, rule: str = "fedavg"):
    g = model.initial_weights()
    for r in range(rounds):
        ups = [Update(id=f"{i:04d}", sender=f"n{i}", weights=model.train(g, X, y, seed=1000 * r + i),
                      num_samples=len(y)) for i, (X, y) in enumerate(parts)]
        g = aggregate(rule, ups, {}).weights
    return g


def centralized(model, X, y, rounds: int):
    w = model.initial_weights()
    for r in range(rounds):
        w = model.train(w, X, y, seed=r)
    return w


def main() -> int:
    rounds = 10
    ds = load_dataset("digits")
    model = build_model(default_spec("digits", "mlp"))
    parts = partition(ds.X_train, ds.y_train, 4, "iid", seed=0)
    fed = model.evaluate(fedavg_rounds(model, parts, rounds), ds.X_test, ds.y_test)["accuracy"]
    cen = model.evaluate(centralized(model, ds.X_train, ds.y_train, rounds),
                         ds.X_test, ds.y_test)["accuracy"]
    print(f"digits MLP(32) 4 IID nodes, {rounds} rounds FedAvg: {100 * fed:.2f} %  "
          f"centralized (same epochs): {100 * cen:.2f} %  gap {100 * (cen - fed):+.2f} points")

    from sklearn.neural_network import MLPClassifier
    sk = MLPClassifier((32,), max_iter=500, random_state=0).fit(ds.X_train, ds.y_train)
    print(f"reference: sklearn MLPClassifier((32,)) centralized: "
          f"{100 * sk.score(ds.X_test, ds.y_test):.2f} %")

    X, y = parts[0]
    g = model.initial_weights()
    model.train(g, X, y, seed=0)
    t0 = time.perf_counter()
    reps = 20
    for s in range(reps):
        model.train(g, X, y, seed=s)
    ms = 1000 * (time.perf_counter() - t0) / reps
    print(f"one local training (digits MLP 64-32-10, {len(y)} samples, "
          f"{model.spec.epochs} epochs): {ms:.1f} ms")

    dd = load_dataset("diabetes")
    lin = build_model(default_spec("diabetes", "linear"))
    dparts = partition(dd.X_train, dd.y_train, 4, "iid", seed=0)
    rmse = lin.evaluate(fedavg_rounds(lin, dparts, rounds), dd.X_test, dd.y_test)["rmse"]
    ref = LinearRegression().fit(dd.X_train, dd.y_train).predict(dd.X_test)
    ref_rmse = float(np.sqrt(np.mean((ref - dd.y_test) ** 2)))
    print(f"diabetes linear 4 IID nodes, {rounds} rounds FedAvg: RMSE {rmse:.2f}  "
          f"LinearRegression: {ref_rmse:.2f}  ratio {rmse / ref_rmse:.4f}")
    ok = (cen - fed) <= 0.015 and rmse <= 1.02 * ref_rmse
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
