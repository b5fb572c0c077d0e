"""Peer URLs: which strings name a peer, how the table spells them, and which host and subnet they count against.

Split from :mod:`learningchain.node.p2p.peer_table` (which holds the peers these
URLs name). A peer is a host: ``scheme://host[:port]``, no path (a URL with a
path is refused, ``peer-url-path``: 60 paths on one slow server once filled
every table). The per-host and per-subnet caps of the table count
:func:`host_groups`; ``--peers`` is read by :func:`parse_peer_list`.
"""
from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from learningchain.core import errors
from learningchain.core.errors import ConfigError


def peer_url_refusal(url: Any) -> tuple[str, str] | None:
    """None if ``url`` names a peer (``http(s)://host[:port]``, at most a trailing
    ``/``), else ``(reason code, why)``: ``peer-url-path`` for a path, else
    ``bad-peer-url``."""
    if not isinstance(url, str) or not url or len(url) > 200:
        return "bad-peer-url", "url must be a string of at most 200 characters"
    try:
        parts = urlsplit(url)
        parts.port  # raises on a bad port
    except ValueError:
        return "bad-peer-url", f"url {url!r} is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "bad-peer-url", f"url must be http(s)://host[:port], got {url!r}"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "bad-peer-url", "url must not carry a query, fragment or credentials"
    if parts.path not in ("", "/"):
        return errors.PEER_URL_PATH, f"a peer is a host, http(s)://host[:port] without a path; got {url!r}"
    return None


def check_peer_url(url: Any) -> str | None:
    """None if ``url`` is an acceptable peer URL (:func:`peer_url_refusal`), else why not."""
    refusal = peer_url_refusal(url)
    return refusal[1] if refusal else None


def host_groups(url: str) -> tuple[str, str, str]:
    """``(host:port, host, subnet)`` of a peer URL: what the per-host and
    per-subnet caps count. Every loopback address (and ``localhost``) is one
    host, ``loopback``; a host name is its own host and subnet (never resolved:
    a lookup per offer would be a cost anyone could impose)."""
    parts = urlsplit(url)
    name = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(".localhost"):
            return f"loopback:{port}", "loopback", "loopback"
        return f"{name}:{port}", name, name
    if ip.is_loopback:
        return f"loopback:{port}", "loopback", "loopback"
    subnet = ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}", str(ip), str(subnet)


def parse_peer_list(text: str) -> list[str]:
    """``--peers`` (comma-separated URLs) as a list; raises ConfigError naming the
    first URL that :func:`check_peer_url` refuses, instead of dropping it."""
    urls = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        problem = check_peer_url(part)
        if problem is not None:
            raise ConfigError(f"--peers: {problem} (give comma-separated URLs such as "
                              f"http://127.0.0.1:5001)")
        urls.append(normalize(part))
    return urls


def normalize(url: str) -> str:
    """The table's spelling of a peer URL: scheme and host in lower case, no
    trailing ``/``."""
    url = url.rstrip("/")
    scheme, sep, rest = url.partition("://")
    return f"{scheme.lower()}{sep}{rest.lower()}" if sep and "/" not in rest else url


#: hosts that mean "every address of this machine": a node may listen there, but no peer can reach it there.
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def is_wildcard(host: str) -> bool:
    return host.strip().lower() in WILDCARD_HOSTS


def own_url(host: str, port: int, advertise_url: str | None = None, scheme: str = "http") -> str:
    """The URL a node gives its peers (``X-Peer``, its announce, ``/peers``):
    ``advertise_url`` (``run --advertise-url``) if given, else
    ``scheme://host:port`` of the address it listens on (an IPv6 address in
    brackets). A wildcard ``host`` (0.0.0.0, ::) without ``advertise_url`` is a
    ConfigError: peers told to use 0.0.0.0 would reach themselves, and guessing
    one of the machine's names or addresses would be wrong behind NAT, in a
    container or on a multi-homed host."""
    if advertise_url:
        return normalize(advertise_url)
    if is_wildcard(host):
        raise ConfigError(f"--host {host or '(empty)'} listens on every address of this machine, and peers "
                          f"cannot reach {host or 'it'}: give the URL they should use with --advertise-url, "
                          f"e.g. --advertise-url {scheme}://node3.lab:{port}")
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return normalize(f"{scheme}://{name}:{port}")
