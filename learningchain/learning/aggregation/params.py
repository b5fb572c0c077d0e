"""Parsing and checking of aggregation parameters.

Parameters live in the genesis document, which is hashed with
:func:`learningchain.core.encoding.canonical_json` and therefore carries no floats:
fractions travel as decimal strings ("0.1"). Callers may also pass ints or
floats directly; every value is parsed here, and any problem is a
:class:`~learningchain.core.errors.ConfigError` naming the rule and the parameter.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from learningchain.core.errors import ConfigError


class AggregationError(ConfigError):
    """The rule cannot honour its parameters for these updates (too few updates,
    inconsistent shapes, empty input)."""


#: rule -> {parameter: (kind, default)}; kind is "int" or "float".
SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "fedavg": {"cap_factor": ("float", "2")},
    "median": {},
    "trimmed-mean": {"beta": ("float", "0.1")},
    "krum": {"f": ("int", 1)},
    "multi-krum": {"f": ("int", 1), "m": ("int", 0)},
    "bulyan": {"f": ("int", 1)},
    "l-nearest": {"l": ("int", 3)},
}
RULES = tuple(SCHEMA)


def parse_int(rule: str, name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{rule}: parameter {name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ConfigError(f"{rule}: parameter {name} must be an integer, got {value!r}")


def parse_float(rule: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{rule}: parameter {name} must be a number or decimal string, "
                          f"got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(f"{rule}: parameter {name} must be a decimal number, "
                          f"got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{rule}: parameter {name} must be finite, got {value!r}")
    return out


def check_rule(rule: str) -> None:
    if rule not in SCHEMA:
        raise ConfigError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}")


def parse_params(rule: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with ``params``, parsed and range-checked (independent of n)."""
    check_rule(rule)
    params = dict(params or {})
    schema = SCHEMA[rule]
    unknown = sorted(set(params) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise ConfigError(f"{rule}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
    out: dict[str, Any] = {}
    for name, (kind, default) in schema.items():
        raw = params.get(name, default)
        out[name] = parse_int(rule, name, raw) if kind == "int" else parse_float(rule, name, raw)
    if "f" in out and out["f"] < 0:
        raise ConfigError(f"{rule}: f must be >= 0, got {out['f']}")
    if rule == "multi-krum" and out["m"] < 0:
        raise ConfigError(f"multi-krum: m must be >= 1 (or 0 for n - f), got {out['m']}")
    if rule == "l-nearest" and out["l"] < 1:
        raise ConfigError(f"l-nearest: l must be >= 1, got {out['l']}")
    if rule == "trimmed-mean" and not 0.0 <= out["beta"] < 0.5:
        raise ConfigError(f"trimmed-mean: beta must be in [0, 0.5), got {out['beta']}")
    if rule == "fedavg" and out["cap_factor"] < 1.0:
        raise ConfigError(f"fedavg: cap_factor must be >= 1, got {out['cap_factor']}")
    return out


def default_params(rule: str, n: int | None = None) -> dict:
    """Defaults in canonical-JSON-safe form (ints, and floats as decimal strings).

    With ``n`` (the updates a round is expected to have, i.e. the quorum),
    trimmed-mean's ``beta`` is raised, if needed, to the smallest hundredth that
    trims one update per side at ``n`` (beta 0.1 trims nothing below 10
    updates; 4 updates get "0.25"). Below 3 updates no beta can trim, and
    :func:`min_updates` makes genesis say so."""
    check_rule(rule)
    out = {name: default for name, (_, default) in SCHEMA[rule].items()}
    if rule == "trimmed-mean" and n is not None and n >= 3 and trim_count(n, float(out["beta"])) < 1:
        hundredths = 10
        while trim_count(n, hundredths / 100) < 1 and hundredths < 49:
            hundredths += 1
        out["beta"] = f"{hundredths / 100:g}"
    return out


def trim_count(n: int, beta: float) -> int:
    """Updates trimmed per side by trimmed-mean: ``floor(beta * n)`` (Yin et al.
    2018, Definition 2), in IEEE float64 like every validator."""
    return int(math.floor(beta * n))


def min_updates(rule: str, params: Mapping[str, Any] | None) -> int:
    """Smallest number of updates the rule accepts with these parameters."""
    p = parse_params(rule, params)
    if rule == "krum":
        return 2 * p["f"] + 3
    if rule == "multi-krum":
        return max(2 * p["f"] + 3, p["m"] + p["f"])
    if rule == "bulyan":
        return 4 * p["f"] + 3
    if rule == "l-nearest":
        return p["l"]
    if rule == "trimmed-mean" and p["beta"] > 0:
        # smallest n whose floor(beta n) trims at least one per side; beta < 0.5
        # keeps n - 2 floor(beta n) >= 1 value per coordinate.
        n = max(1, int(1 / p["beta"]) - 1)
        while trim_count(n, p["beta"]) < 1:
            n += 1
        return n
    return 1


def robust_params(rule: str, nodes: int, f: int) -> dict:
    """Parameters that let ``rule`` tolerate ``f`` attackers among ``nodes`` (the
    bound is known in advance and fixed in genesis, not tuned per run): what
    ``demo``, ``simulate`` and ``experiment`` all use when given ``--byzantine f``
    (``simulate`` used to keep the rule's defaults, so Multi-Krum with f=1 let two
    attackers in every round). Empty for rules without such a parameter."""
    if f <= 0:
        return {}
    if rule == "trimmed-mean":  # trim at least f per side of each coordinate
        hundredths = min(49, math.ceil(100 * f / nodes))
        while hundredths < 49 and trim_count(nodes, hundredths / 100) < f:  # float64 floor, as validators
            hundredths += 1
        return {"beta": format(hundredths / 100, "f").rstrip("0").rstrip(".")}
    if rule == "krum":
        return {"f": f}
    if rule == "multi-krum":
        return {"f": f, "m": 0}
    if rule == "bulyan":  # needs n >= 4f + 3
        return {"f": max(0, min(f, (nodes - 3) // 4))}
    if rule == "l-nearest":
        return {"l": max(1, nodes - f)}
    return {}


def undersized(rule: str, params: Mapping[str, Any], nodes: int, f: int) -> str | None:
    """What is wrong when ``params`` let ``rule`` tolerate fewer than ``f``
    attackers among ``nodes`` (an explicit ``--agg-param`` below the attack), or
    None. Reported and recorded, not refused: an experiment may want exactly that."""
    need = robust_params(rule, nodes, f)
    if not need:
        return None
    if rule in ("krum", "multi-krum", "bulyan"):
        have = int(params.get("f", 0))
        return None if have >= need["f"] else (f"{rule} f={have} tolerates fewer than the {f} attackers "
                                                f"(f={need['f']} would)")
    if rule == "l-nearest":
        have = int(params.get("l", nodes))
        return None if have <= need["l"] else f"l-nearest l={have} lets attackers in (l={need['l']} would not)"
    if rule == "trimmed-mean":
        have = float(params.get("beta", 0))
        return None if trim_count(nodes, have) >= f else (f"trimmed-mean beta={params.get('beta')} trims fewer "
                                                           f"than the {f} attackers (beta={need['beta']} would)")
    return None


def sized_params(rule: str, nodes: int, byzantine: int = 0, quorum: int | None = None,
                 explicit: Mapping[str, Any] | None = None) -> dict:
    """The parameters ``demo``, ``simulate`` and ``experiment`` give ``rule`` for
    ``nodes`` participants of which ``byzantine`` attack: the defaults for the
    quorum (:func:`default_params`), raised to tolerate the attackers
    (:func:`robust_params`), and what the user set explicitly on top."""
    return {**default_params(rule, quorum or nodes), **robust_params(rule, nodes, byzantine),
            **dict(explicit or {})}


#: how far :func:`min_nodes` looks (a rule that needs more is set far out of range)
MAX_NODES = 10_000


def min_nodes(rule: str, byzantine: int = 0, explicit: Mapping[str, Any] | None = None) -> int | None:
    """The smallest number of nodes (each one update, the quorum all of them)
    at which ``rule``, sized by :func:`sized_params` for ``byzantine``
    attackers, accepts a round; None when none up to :data:`MAX_NODES` does.
    What the quorum errors of ``demo`` / ``simulate`` / ``experiment`` tell the
    user to pass as ``--nodes``."""
    n = max(1, byzantine + 1)
    while n <= MAX_NODES:
        if min_updates(rule, sized_params(rule, n, byzantine, explicit=explicit)) <= n:
            return n
        n += 1  # no jump to the need: the sized parameters change with n
    return None


def max_byzantine(rule: str, nodes: int, byzantine: int, explicit: Mapping[str, Any] | None = None) -> int | None:
    """The largest attacker count below ``byzantine`` that ``rule`` can be sized
    for with ``nodes`` nodes (quorum ``nodes``), or None when no lower count helps."""
    for k in range(byzantine - 1, -1, -1):
        if min_updates(rule, sized_params(rule, nodes, k, explicit=explicit)) <= nodes:
            return k
    return None
