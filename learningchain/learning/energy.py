"""Energy: what each node declares it costs to learn and to talk, and what a
round actually cost.

A node's :class:`EnergyProfile` travels in genesis (``participants[i].energy``)
as integers in **nanojoules**, because canonical JSON has no floats::

    {"train_nj": 24000,        # one training sample for one epoch
     "send_nj": 400,           # one byte sent
     "recv_nj": 200,           # one byte received
     "hash_nj": 4000,          # one SHA-256 proof-of-work try (0: the node does not mine)
     "budget_nj": 5000000000,  # optional: total the node may spend on learning (null: no limit)
     "renewable": {"period": 24, "on": [8, 9, ..., 16]}}   # optional availability schedule

``renewable`` says in which rounds the node runs on renewable supply: round r
is green iff ``(r - 1) % period`` is in ``on``. The selection policy
(:mod:`learningchain.learning.selection`) discounts green rounds.

:func:`round_energy` turns what happened in a round (:class:`Activity`:
sample-epochs trained, bytes sent and received, gossip included, hashes
computed) into joules per node and in total. Pure: no I/O, no clock. The
estimate is reporting, not consensus: only the profiles and the per-node
planning cost (:func:`planned_cost_nj`, integers) enter selection.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from learningchain.core.errors import ConfigError

_REQUIRED = ("train_nj", "send_nj", "recv_nj")
_OPTIONAL = ("hash_nj", "budget_nj", "renewable")
MAX_NJ = 2**53 - 1


def _int(name: str, value: Any, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_NJ:
        raise ConfigError(f"energy profile: {name} must be an integer in [{minimum}, 2^53), got {value!r}")
    return value


@dataclass(frozen=True)
class EnergyProfile:
    train_nj: int                 # per training sample-epoch
    send_nj: int                  # per byte sent
    recv_nj: int                  # per byte received
    hash_nj: int = 0              # per proof-of-work hash
    budget_nj: int | None = None  # total allowed for learning; None = unlimited
    renewable_period: int = 0     # 0: no schedule
    renewable_on: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("train_nj", "send_nj", "recv_nj", "hash_nj"):
            _int(name, getattr(self, name))
        if self.budget_nj is not None:
            _int("budget_nj", self.budget_nj, 1)
        if self.renewable_period:
            _int("renewable.period", self.renewable_period, 1)
            if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < self.renewable_period
                       for s in self.renewable_on) or len(set(self.renewable_on)) != len(self.renewable_on):
                raise ConfigError("energy profile: renewable.on must list distinct slots in [0, period)")
            object.__setattr__(self, "renewable_on", tuple(sorted(self.renewable_on)))

    def green(self, round: int) -> bool:
        """Does the node run on renewable supply in ``round``?"""
        return bool(self.renewable_period) and (round - 1) % self.renewable_period in self.renewable_on

    def to_dict(self) -> dict:
        doc: dict = {"train_nj": self.train_nj, "send_nj": self.send_nj, "recv_nj": self.recv_nj}
        if self.hash_nj:
            doc["hash_nj"] = self.hash_nj
        if self.budget_nj is not None:
            doc["budget_nj"] = self.budget_nj
        if self.renewable_period:
            doc["renewable"] = {"period": self.renewable_period, "on": list(self.renewable_on)}
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> "EnergyProfile":
        if not isinstance(doc, Mapping):
            raise ConfigError("energy profile must be an object")
        missing = [k for k in _REQUIRED if k not in doc]
        unknown = sorted(set(doc) - set(_REQUIRED) - set(_OPTIONAL))
        if missing or unknown:
            raise ConfigError(f"energy profile: missing {missing or '-'}, unknown {unknown or '-'}; "
                              f"fields are {', '.join(_REQUIRED + _OPTIONAL)}")
        ren = doc.get("renewable")
        period, on = 0, ()
        if ren is not None:
            if not isinstance(ren, Mapping) or set(ren) != {"period", "on"} or not isinstance(ren["on"], list):
                raise ConfigError('energy profile: renewable must be {"period": P, "on": [slots]}')
            period, on = ren["period"], tuple(ren["on"])
        return cls(train_nj=doc["train_nj"], send_nj=doc["send_nj"], recv_nj=doc["recv_nj"],
                   hash_nj=doc.get("hash_nj", 0), budget_nj=doc.get("budget_nj"),
                   renewable_period=period, renewable_on=on)


#: a node with no declared profile is costed as this (a laptop on Wi-Fi).
DEFAULT_PROFILE = EnergyProfile(train_nj=24_000, send_nj=400, recv_nj=200, hash_nj=4_000)


def random_profiles(n: int, seed: int, budget_nj: int | None = None,
                    green_fraction: float = 0.5, hash_nj: int = 4_000) -> list[EnergyProfile]:
    """``n`` heterogeneous profiles drawn from ``seed``: training from 4 µJ to
    100 µJ per sample-epoch (accelerator to old phone, log-uniform), radio from
    50 to 2,000 nJ per byte sent (wired to cellular), receiving at half that, and
    a renewable window of 8 rounds in 24 for ``green_fraction`` of the nodes.
    ``hash_nj`` (the same for all; not drawn, so the draws of the other fields
    do not depend on it) is the cost of one proof-of-work hash: 4 µJ is a ~10 W
    laptop core at the ~2.5 M SHA-256/s of a Python nonce loop."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        train = int(4_000 * 25 ** rng.random())
        send = int(50 * 40 ** rng.random())
        green = rng.random() < green_fraction
        start = rng.randrange(24)
        out.append(EnergyProfile(train_nj=train, send_nj=send, recv_nj=max(1, send // 2), hash_nj=hash_nj,
                                 budget_nj=budget_nj,
                                 renewable_period=24 if green else 0,
                                 renewable_on=tuple(sorted((start + k) % 24 for k in range(8))) if green else ()))
    return out


def planned_cost_nj(profile: EnergyProfile, samples: int, epochs: int, update_bytes: int,
                    model_bytes: int) -> int:
    """What taking part in one round will cost a node (integers, consensus-safe):
    download G(r-1), train ``samples`` x ``epochs``, upload its update once."""
    return (profile.train_nj * samples * epochs + profile.send_nj * update_bytes
            + profile.recv_nj * model_bytes)


@dataclass
class Activity:
    """What one node did in one round (counters, filled by the simulator or node)."""
    sample_epochs: int = 0
    sent: int = 0       # bytes, gossip included
    received: int = 0   # bytes, gossip included
    hashes: int = 0

    def add(self, *, sample_epochs: int = 0, sent: int = 0, received: int = 0, hashes: int = 0) -> None:
        self.sample_epochs += sample_epochs
        self.sent += sent
        self.received += received
        self.hashes += hashes


@dataclass(frozen=True)
class Energy:
    train_j: float
    comm_j: float
    pow_j: float

    @property
    def total_j(self) -> float:
        return self.train_j + self.comm_j + self.pow_j


def node_energy(profile: EnergyProfile, act: Activity) -> Energy:
    return Energy(train_j=profile.train_nj * act.sample_epochs * 1e-9,
                  comm_j=(profile.send_nj * act.sent + profile.recv_nj * act.received) * 1e-9,
                  pow_j=profile.hash_nj * act.hashes * 1e-9)


def round_energy(profiles: Mapping[str, EnergyProfile], activity: Mapping[str, Activity]) -> dict:
    """``{"total_j", "train_j", "comm_j", "pow_j", "per_node": {name: joules}}`` for
    one round; nodes without a profile use :data:`DEFAULT_PROFILE`."""
    per = {name: node_energy(profiles.get(name, DEFAULT_PROFILE), act) for name, act in activity.items()}
    parts = {k: sum(getattr(e, k) for e in per.values()) for k in ("train_j", "comm_j", "pow_j")}
    return {"total_j": sum(parts.values()), **parts,
            "per_node": {name: e.total_j for name, e in sorted(per.items())}}


@dataclass
class EnergyLedger:
    """Cumulative joules per node across rounds (reporting only)."""
    spent: dict = field(default_factory=dict)

    def add(self, round_doc: Mapping) -> float:
        for name, j in round_doc["per_node"].items():
            self.spent[name] = self.spent.get(name, 0.0) + j
        return sum(self.spent.values())


class EnergyMeter:
    """A live node's estimate of its own energy, per round, from what it did:
    sample-epochs it trained (:meth:`trained`) and its cumulative counters, bytes
    sent and received (gossip, sync and API) and proof-of-work hashes, read at
    :meth:`observe`; the growth since the previous observation is charged to the
    round then open. Priced with the profile the node declared in genesis, else
    :data:`DEFAULT_PROFILE`. Reporting only, never consensus. The caller serialises
    access (the node holds a lock)."""

    def __init__(self, profile: EnergyProfile | None = None, keep: int = 1000):
        self.declared = profile is not None
        self.profile = profile or DEFAULT_PROFILE
        self.keep = keep
        self.rounds: dict[int, Activity] = {}
        self.total = Activity()
        self._seen = (0, 0, 0)

    def _at(self, round: int) -> Activity:
        act = self.rounds.setdefault(round, Activity())
        while len(self.rounds) > self.keep:
            del self.rounds[min(self.rounds)]
        return act

    def trained(self, round: int, sample_epochs: int) -> None:
        self._at(round).add(sample_epochs=sample_epochs)
        self.total.add(sample_epochs=sample_epochs)

    def observe(self, round: int, sent: int, received: int, hashes: int) -> None:
        ds, dr, dh = (max(0, now - before) for now, before in zip((sent, received, hashes), self._seen))
        self._seen = (sent, received, hashes)
        if ds or dr or dh:
            self._at(round).add(sent=ds, received=dr, hashes=dh)
            self.total.add(sent=ds, received=dr, hashes=dh)

    @staticmethod
    def _doc(profile: EnergyProfile, act: Activity) -> dict:
        e = node_energy(profile, act)
        return {"total_j": round(e.total_j, 9), "train_j": round(e.train_j, 9), "comm_j": round(e.comm_j, 9),
                "pow_j": round(e.pow_j, 9), "sample_epochs": act.sample_epochs, "sent": act.sent,
                "received": act.received, "hashes": act.hashes}

    def round_report(self, round: int) -> dict | None:
        act = self.rounds.get(round)
        return None if act is None else self._doc(self.profile, act)

    def report(self) -> dict:
        """``/status`` -> ``energy``: the profile, totals since start, the last round's."""
        last = max(self.rounds) if self.rounds else None
        return {"profile": self.profile.to_dict(), "declared": self.declared,
                **self._doc(self.profile, self.total), "last_round": last,
                "last_round_energy": None if last is None else self.round_report(last)}
