"""Genesis ``privacy``: the parameters of secure aggregation and every refusal of
a configuration it cannot run under (docs/protocol.md section 14.1).

``{"secure_aggregation": {"threshold": t, "clip": "<decimal>", "scale": s, "phase_timeout": k}}``;
absent (None) is plain mode, and then no field is written, so every existing
genesis hash is unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from learningchain.core.errors import ConfigError
from learningchain.learning.selection import minimum_selected

SA_KEYS = ("threshold", "clip", "scale", "phase_timeout")
#: N * ceil(clip * scale) may not exceed this: the sum of N inputs (plus DP noise)
#: stays far inside the signed 32-bit range the sum is read in.
SUM_BOUND = 1 << 30


@dataclass(frozen=True)
class SecAggParams:
    threshold: int       # t: shares that rebuild a secret
    clip: str            # decimal string: each delta coordinate is clamped to [-clip, clip]
    scale: int           # fixed-point scale
    phase_timeout: int   # blocks after a phase opened at which it closes anyway

    @property
    def clip_value(self) -> float:
        return float(Decimal(self.clip))

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "clip": self.clip, "scale": self.scale,
                "phase_timeout": self.phase_timeout}


def _int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**53:
        raise ConfigError(f"genesis: secure_aggregation {name} must be an integer in [1, 2^53), got {value!r}")
    return value


def _clip(value: Any) -> str:
    try:
        d = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or d <= 0 or str(d) != value:
        raise ConfigError(f"genesis: secure_aggregation clip must be a positive decimal string "
                          f"(e.g. \"0.5\"), got {value!r}")
    return value


def parse_privacy(config: Any) -> SecAggParams | None:
    """The parameters of ``config.privacy`` (a NetworkConfig being built), checked
    against the rest of the configuration; None in plain mode. Raises ConfigError."""
    privacy = config.privacy
    if privacy is None:
        return None
    if not isinstance(privacy, Mapping) or set(privacy) != {"secure_aggregation"}:
        raise ConfigError('genesis: privacy must be {"secure_aggregation": {...}} or absent')
    sa = privacy["secure_aggregation"]
    if not isinstance(sa, Mapping):
        raise ConfigError("genesis: secure_aggregation must be an object")
    unknown, missing = sorted(set(sa) - set(SA_KEYS)), sorted(set(SA_KEYS) - set(sa))
    if unknown:
        raise ConfigError(f"genesis: secure_aggregation: unknown key(s) {', '.join(map(str, unknown))}")
    if missing:
        raise ConfigError(f"genesis: secure_aggregation: missing key(s) {', '.join(missing)}")
    params = SecAggParams(_int("threshold", sa["threshold"]), _clip(sa["clip"]), _int("scale", sa["scale"]),
                          _int("phase_timeout", sa["phase_timeout"]))
    check_against(config, params)
    return params


def check_against(config: Any, p: SecAggParams) -> None:
    """The refusals of docs/protocol.md 14.1 that involve the rest of genesis."""
    if config.allow_list is None and config.participants is None:
        raise ConfigError("secure aggregation needs a known roster: write genesis with --allow-list "
                          "or --participants")
    if config.rule != "fedavg":
        raise ConfigError(f"robust rule {config.rule} cannot run under secure aggregation: it must see each "
                          f"update, and only the sum of the masked updates is ever revealed; use fedavg "
                          f"(an honest member's delta is clipped instead; a malicious one is bounded only by the sum's range)")
    n = len(config.candidates)
    t = p.threshold
    if not n // 2 + 1 <= t <= n:
        raise ConfigError(f"genesis: secure_aggregation threshold {t} must be in [floor(N/2)+1, N] = "
                          f"[{n // 2 + 1}, {n}] for a roster of N={n}")
    need = n * math.ceil(Decimal(p.clip) * p.scale)
    if need > SUM_BOUND:
        raise ConfigError(f"genesis: secure_aggregation N * ceil(clip * scale) = {need} exceeds 2^30: "
                          f"the sum of {n} inputs must stay far inside 32 bits; lower scale or clip")
    if config.quorum < t:
        raise ConfigError(f"genesis: quorum {config.quorum} is below the secure_aggregation threshold t={t}: "
                          f"a setup phase closed at the quorum could never be unmasked; raise quorum")
    policy, params = config.selection_policy
    least = minimum_selected(policy, params)
    if least is not None and least < t:
        raise ConfigError(f"genesis: selection policy {policy!r} may select {least} sender(s), fewer than the "
                          f"secure_aggregation threshold t={t}; raise k / min_k")


def default_params(n: int, round_timeout: int, clip: str = "0.5", threshold: int | None = None,
                   scale: int | None = None, phase_timeout: int | None = None) -> SecAggParams:
    """The CLI's defaults for a roster of ``n``: t = floor(2N/3) + 1, clip 0.5, the
    largest power-of-two scale with N * clip * scale <= 2^28 (4x room for noise
    below the 2^30 bound), phase_timeout = round_timeout."""
    if scale is None:
        try:  # no roster or a bad clip: genesis refuses them when the config is built
            per = Decimal(clip) * max(n, 1)
        except InvalidOperation:
            per = Decimal(0)
        scale = 1
        while per > 0 and per * scale * 2 <= (1 << 28):
            scale *= 2
    return SecAggParams(threshold if threshold is not None else 2 * n // 3 + 1, clip, scale,
                        phase_timeout if phase_timeout is not None else round_timeout)
