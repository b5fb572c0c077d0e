"""``<data dir>/baselines.json``: what the explorer's chart compares the
federation with, written by whoever had the data to compute it (``node.py
demo``, which holds every node's partition) and read by the node's explorer.

* ``centralized``: the same model trained from G0 on the pooled training data of
  every node for the run's rounds x E epochs (only ``demo`` has the pooled data);
* ``local_only``: this node trained alone on its own partition for the same
  epochs (``local_only_mean``: the mean over the nodes);
* ``g0``: the genesis model, untrained.

All on the same held-out set as the node's own evaluation; ``test_digest``
(:func:`dataset_digest`) says which, and the reader refuses figures measured on
another set. A file that is too big, not JSON, or of the wrong shape is ignored
with a note saying why (never an error page).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

FILE = "baselines.json"
#: the reader ignores a larger file.
MAX_BYTES = 64 << 10
FORMAT = 1
METRIC_SETS = ("centralized", "local_only", "local_only_mean", "g0")


def dataset_digest(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes (C order)."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(X), np.ascontiguousarray(y)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_baselines(data_dir: Path, doc: dict) -> Path:
    """Write ``doc`` atomically (a temporary file, then a rename)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = data_dir / FILE, data_dir / (FILE + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **doc}, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _metrics(value, name: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value or len(value) > 16:
        raise ValueError(f"{name} must be an object of at most 16 metrics")
    out = {}
    for k, v in value.items():
        if k == "per_node":
            continue
        if not isinstance(k, str) or len(k) > 32 or isinstance(v, bool) or not isinstance(v, (int, float)) \
                or not math.isfinite(v):
            raise ValueError(f"{name}.{str(k)[:32]} must be a finite number")
        out[k] = float(v)
    return out


def validate(doc, test_digest: str | None) -> dict:
    """The checked document (only the fields we know), or ValueError saying why not."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {json.dumps(doc.get('format'))[:20]}, expected {FORMAT}")
    out = {k: _metrics(doc[k], k) for k in METRIC_SETS if doc.get(k) is not None}
    for key in ("rounds", "epochs"):
        v = doc.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 10**9:
            raise ValueError(f"{key} must be a positive integer")
        out[key] = v
    source = doc.get("source")
    if not isinstance(source, str) or not 0 < len(source) <= 500:
        raise ValueError("source must be a text of at most 500 characters")
    out["source"] = source
    digest = doc.get("test_digest")
    if test_digest is not None and digest != test_digest:
        raise ValueError("measured on another held-out set than this node's (test_digest differs)")
    return out


def read_baselines(data_dir: Path, test_digest: str | None) -> tuple[dict | None, str]:
    """(checked document or None, a note for the page): never raises."""
    path = Path(data_dir) / FILE
    try:
        size = path.stat().st_size
    except OSError:
        return None, f"no {FILE} in this node's data dir: not available on this node"
    if size > MAX_BYTES:
        return None, f"{FILE} ignored: {size} bytes, more than {MAX_BYTES}"
    try:
        doc = validate(json.loads(path.read_bytes()), test_digest)
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        return None, f"{FILE} ignored: {str(exc)[:200]}"
    return doc, f"from {FILE}: {doc['source']}"
