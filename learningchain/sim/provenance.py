"""Where a result came from: the one ``provenance`` block that ``simulate``,
``experiment`` and ``demo`` write into their results (issue 14: experiments
that cannot mislead).

    {"config":   the full resolved configuration (every parameter, defaults included),
     "seeds":    {name: seed},
     "command":  the command line (argv, as run),
     "cwd":      the working directory,
     "git":      {"commit": hex or null, "dirty": bool or null},   # null outside a git checkout
     "packages": {distribution: version or null},                 # importlib.metadata
     "python":   "3.11.9",
     "host":     {"platform", "machine", "cpus"},
     "created":  "2026-12-01T17:40:00Z"}

Nothing here is on a consensus path: it reads the environment (git, package
metadata) only when a run writes its results.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]

#: the distributions whose versions can change a result (or the speed figures)
PACKAGES = ("numpy", "scikit-learn", "scipy", "dp-accounting", "matplotlib", "flask", "waitress", "requests",
            "ecdsa", "gmpy2", "coincurve", "cryptography", "tqdm", "scikit-image", "torch")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: str | os.PathLike = ROOT) -> dict[str, Any]:
    """``{"commit": HEAD, "dirty": uncommitted changes to tracked files}``, or
    nulls when ``root`` is not a git checkout (or git is missing)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _plain(obj: Any) -> Any:
    """``obj`` as JSON values (tuples as lists, paths and other objects as strings)."""
    return json.loads(json.dumps(obj, default=str))


def provenance(config: Mapping[str, Any], seeds: Mapping[str, Any], argv: Sequence[str] | None = None,
               root: str | os.PathLike = ROOT) -> dict[str, Any]:
    """The provenance block of a run configured by ``config`` (resolved: every
    parameter the run used, defaults included) with ``seeds``; ``argv``
    defaults to this process's command line."""
    return {"config": _plain(dict(config)), "seeds": _plain(dict(seeds)),
            "command": list(sys.argv if argv is None else argv), "cwd": os.getcwd(),
            "git": git_state(root), "packages": package_versions(), "python": platform.python_version(),
            "host": {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def flags(args: Any) -> dict[str, Any]:
    """Every flag of an argparse namespace, defaults included (not the handler)."""
    return {k: v for k, v in vars(args).items() if not callable(v) and k != "command_line"}


def command_line(args: Any) -> list[str] | None:
    """The command line an argparse namespace was parsed from, when
    :class:`~learningchain.cli.argtypes.LazyCommands` noted it (None: use sys.argv)."""
    line = getattr(args, "command_line", None)
    return list(line) if line else None
