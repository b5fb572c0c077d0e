#!/usr/bin/env python3
"""Container health check: GET a path of the node on this host; exit 0 on 200, else 1 with one line.

``python deploy/healthcheck.py [PATH]`` (default ``/healthz``; ``/readyz`` for readiness). The port is
``LC_PORT`` (default 5000). With ``LC_TLS_CERT`` set the node serves HTTPS: the check then speaks
HTTPS and verifies the node's certificate against ``LC_TLS_CA`` (the network CA), without a host
name check (it connects to 127.0.0.1, which a node certificate need not name). Standard library only
(``curl`` is not in python:3.11-slim): the Dockerfile's HEALTHCHECK and docker-compose.yml run it.
"""
from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def check(path: str, env: dict[str, str]) -> tuple[bool, str]:
    port = env.get("LC_PORT", "").strip() or "5000"
    context = None
    scheme = "http"
    if env.get("LC_TLS_CERT", "").strip():
        scheme = "https"
        context = ssl.create_default_context(cafile=env.get("LC_TLS_CA") or None)
        context.check_hostname = False
    url = f"{scheme}://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as resp:
            return resp.status == 200, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "/healthz"
    ok, line = check(path if path.startswith("/") else "/" + path, dict(os.environ))
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
