"""``node.py model --export FILE``: the node's current global model as a
``.npz`` that ``np.load(FILE, allow_pickle=False)`` reads back, or (a torch
network's model) a ``.pt`` checkpoint ``{"state_dict", "round", "digest"}``
that ``torch.load(FILE, weights_only=True)`` reads back, its ``state_dict``
ready for the module's ``load_state_dict``.

The file holds every named array of the model as float32 under its own name,
plus ``__round__`` (a 0-d int64) and ``__digest__`` (a 0-d unicode string, the
model's ``weights_digest`` hex). The digest of the arrays decoded from the
node's answer is recomputed as the chain computes it
(:func:`learningchain.core.encoding.weights_digest`) and must equal the digest
the node reports, or nothing is written. numpy is imported only here, so
``node.py model`` without ``--export`` starts without it.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from learningchain.core.errors import ConfigError, LearningChainError

RESERVED = ("__round__", "__digest__")


class ExportError(LearningChainError):
    """The node's model cannot be exported as it was answered (the command ran and failed)."""


def check_target(path: str, force: bool) -> Path:
    """``FILE`` usable as the export's target: a ``.npz`` path in an existing
    directory, not an existing file unless ``force`` (ConfigError otherwise)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--export {p} is a directory: name a file, e.g. {p / 'model.npz'}")
    if p.suffix not in (".npz", ".pt"):
        raise ConfigError(f"--export {p}: the file must end in .npz (numpy arrays) or .pt (a PyTorch "
                          f"state_dict), e.g. {p.with_suffix('.npz')}")
    if not p.absolute().parent.is_dir():
        raise ConfigError(f"--export {p}: directory {p.absolute().parent} does not exist")
    if p.exists() and not force:
        raise ConfigError(f"--export {p} exists: pass --force to overwrite it")
    return p


def export_model(doc: Any, path: str, force: bool = False) -> str:
    """Write the node's ``/model`` answer ``doc`` to ``path``; the one-line summary."""
    target = check_target(path, force)
    import numpy as np

    from learningchain.core.encoding import decode_weights, weights_digest
    from learningchain.core.errors import EncodingError
    if not isinstance(doc, dict) or not isinstance(doc.get("weights"), dict):
        raise ExportError("the node's /model answer has no weights object")
    r, digest = doc.get("round"), doc.get("digest")
    if not isinstance(r, int) or isinstance(r, bool) or not isinstance(digest, str):
        raise ExportError(f"the node's /model answer has no round and digest (round {r!r}, digest {digest!r})")
    try:
        weights = decode_weights(doc["weights"])
    except EncodingError as exc:
        raise ExportError(f"the node's model does not decode: {exc}") from None
    mine = weights_digest(weights)
    if mine != digest:
        raise ExportError(f"the decoded model's digest {mine} is not the node's {digest}: nothing written")
    clash = [name for name in weights if name in RESERVED]
    if clash:
        raise ExportError(f"the model has an array named {clash[0]}, reserved for the export's metadata")
    arrays = {name: np.asarray(arr, dtype=np.float32) for name, arr in weights.items()}
    params = sum(int(a.size) for a in arrays.values())
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{target.suffix}")
    if target.suffix == ".pt":
        _write_pt(tmp, arrays, r, digest)
        os.replace(tmp, target)
        return f"wrote {target}: round {r}, digest {digest}, {len(arrays)} tensors, {params} parameters"
    try:
        entries = {**arrays, "__round__": np.array(r, dtype=np.int64), "__digest__": np.array(digest)}
        # np.savez's layout (a zip of NAME.npy), written entry by entry: an array may be named
        # "file" or "allow_pickle", which np.savez(**arrays) would take for its own arguments
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for name, arr in entries.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, arr, allow_pickle=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return f"wrote {target}: round {r}, digest {digest}, {len(arrays)} arrays, {params} parameters"


def _write_pt(tmp: Path, arrays: dict, r: int, digest: str) -> None:
    """The ``.pt`` checkpoint: tensors only under ``state_dict`` (what
    ``weights_only=True`` loads), the round and digest beside it."""
    from learningchain.learning.models import load_torch
    load_torch()  # a ConfigError naming the extra when PyTorch is missing
    import torch
    state = {name: torch.from_numpy(arr.copy()) for name, arr in arrays.items()}
    try:
        torch.save({"state_dict": state, "round": r, "digest": digest}, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
