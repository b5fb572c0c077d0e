"""baselines.json: written atomically, read back validated; a missing, oversized,
malformed or foreign file is ignored with a note saying why, never an exception."""
import json

import numpy as np
import pytest

from learningchain.node.baselines_file import FILE, MAX_BYTES, dataset_digest, read_baselines, write_baselines

GOOD = {"source": "node.py demo: test", "rounds": 3, "epochs": 30, "test_digest": "ab" * 32,
        "g0": {"accuracy": 0.1}, "centralized": {"accuracy": 0.97, "f1": 0.96},
        "local_only": {"accuracy": 0.93}, "local_only_mean": {"accuracy": 0.92, "per_node": [{"accuracy": 1}]}}


def test_written_baselines_read_back(tmp_path):
    write_baselines(tmp_path, GOOD)
    doc, note = read_baselines(tmp_path, "ab" * 32)
    assert doc["centralized"] == {"accuracy": 0.97, "f1": 0.96} and doc["rounds"] == 3
    assert doc["local_only_mean"] == {"accuracy": 0.92}  # per_node is not a metric
    assert note == "from baselines.json: node.py demo: test"
    assert not (tmp_path / (FILE + ".tmp")).exists()


def test_a_missing_file_is_not_available(tmp_path):
    assert read_baselines(tmp_path, None) == (None, "no baselines.json in this node's data dir: "
                                                    "not available on this node")


@pytest.mark.parametrize("text, why", [
    ("{not json", "baselines.json ignored: Expecting property name"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({**GOOD, "format": 2}), "format 2"),
    (json.dumps({**GOOD, "format": 1, "centralized": {"accuracy": "high"}}), "centralized.accuracy must be a finite"),
    (json.dumps({**GOOD, "format": 1, "centralized": {"accuracy": float("nan")}}), "must be a finite number"),
    (json.dumps({**GOOD, "format": 1, "rounds": -1}), "rounds must be a positive integer"),
    (json.dumps({**GOOD, "format": 1, "source": None}), "source must be a text"),
    (json.dumps({**GOOD, "format": 1, "test_digest": "cd" * 32}), "another held-out set"),
    ("[" * 50_000 + "]" * 50_000, "baselines.json ignored"),
    (b"\xff\xfe{}", "baselines.json ignored"),
])
def test_a_bad_file_is_ignored_with_the_reason(tmp_path, text, why):
    path = tmp_path / FILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    doc, note = read_baselines(tmp_path, "ab" * 32)
    assert doc is None and note.startswith("baselines.json ignored: ") and why in note


def test_an_oversized_file_is_not_read(tmp_path):
    (tmp_path / FILE).write_text(" " * (MAX_BYTES + 1))
    doc, note = read_baselines(tmp_path, None)
    assert doc is None and f"more than {MAX_BYTES}" in note


def test_the_digest_names_the_arrays_not_just_their_bytes():
    X, y = np.zeros((3, 2), np.float32), np.arange(3)
    assert dataset_digest(X, y) == dataset_digest(X.copy(), y.copy())
    assert dataset_digest(X, y) != dataset_digest(X.reshape(2, 3), y)
    assert dataset_digest(X, y) != dataset_digest(X.astype(np.float64), y)
