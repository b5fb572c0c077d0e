#!/usr/bin/env python3
"""Keys and the shared genesis of an N-node deployment: ``python deploy/mknet.py OUT --nodes N``.

Writes ``OUT/node-<i>/node_key.pem`` (``node.py keygen``; an existing key is kept) for i < N, one
permissioned genesis that allow-lists exactly those keys (``node.py genesis --allow-list``; the
arguments after ``--`` go to it, e.g. ``-- --block-ms 1000 --round-timeout 30``; default
``--dataset digits``) and a copy of it as ``OUT/node-<i>/genesis.json`` in every node dir.

Run again, it changes nothing: an existing genesis in the node dirs is kept (all must agree),
since a new one would start another chain. Two uses:

* docker-compose.yml's one-shot ``init`` service, with each node's named volume mounted at
  ``/net/node-<i>``: ``mknet.py /net --nodes 4 --owner 10001:10001`` (it runs as root, the
  volumes being root-owned at first, and hands the files to the node's user).
* Kubernetes: ``mknet.py out/k8s-net --nodes 4 --k8s deploy/k8s/generated`` also writes the
  Secret ``learningchain-keys`` (``key-<i>.pem``: pod ordinal i installs ``key-<i>.pem``, see
  deploy/entrypoint.py) and the ConfigMap ``learningchain-genesis`` (``genesis.json``) that
  deploy/k8s/statefulset.yaml mounts. Keep OUT private: it holds every node's private key.
  With ``--tls`` it also runs ``node.py tls init`` (a network CA in ``OUT/tls``, one certificate
  per node bound to that node's chain key, valid for the pod's DNS names in ``--namespace``) and
  writes the Secret ``learningchain-tls`` (``ca.pem``, ``node<i>.pem``, ``node<i>.key``; never the
  CA's key, which stays in ``OUT/tls``) that deploy/k8s/tls mounts.

Failures are one line on stderr, exit status 1 (2 for a wrong command line).
"""
from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ.get("LEARNINGCHAIN_APP") or Path(__file__).resolve().parents[1])
KEY_FILE, GENESIS_FILE = "node_key.pem", "genesis.json"
KEYS_SECRET, GENESIS_CONFIGMAP, TLS_SECRET = "learningchain-keys", "learningchain-genesis", "learningchain-tls"
#: the files of ``node.py tls init --out DIR`` that the TLS Secret holds (not ca.key: it stays offline)
TLS_CA, TLS_CERT, TLS_KEY = "ca.pem", "node{i}.pem", "node{i}.key"
#: the StatefulSet and its headless Service (deploy/k8s): pod i is lc-node-<i>.learningchain.<namespace>.svc
POD_PREFIX, SERVICE = "lc-node", "learningchain"
LABELS = "    app.kubernetes.io/name: learningchain\n    app.kubernetes.io/part-of: learningchain\n"


class NetError(Exception):
    pass


def node_py(*args: str) -> str:
    """Run ``node.py ARGS`` with this interpreter; its stdout, or NetError with its one line."""
    done = subprocess.run([sys.executable, str(ROOT / "node.py"), *args], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"status {done.returncode}"])[-1]
        raise NetError(last)
    return done.stdout


def node_dirs(out: Path, n: int) -> list[Path]:
    return [out / f"node-{i}" for i in range(n)]


def make_keys(dirs: list[Path]) -> None:
    for d in dirs:
        if not (d / KEY_FILE).exists():
            node_py("keygen", "--data-dir", str(d))


def existing_genesis(dirs: list[Path]) -> bytes | None:
    """The genesis already in the node dirs (every copy equal), or None."""
    found = {d: (d / GENESIS_FILE).read_bytes() for d in dirs if (d / GENESIS_FILE).exists()}
    if len(set(found.values())) > 1:
        raise NetError(f"the node dirs hold different genesis files ({', '.join(map(str, found))}): "
                       f"they would be different networks; keep one and remove the others")
    return next(iter(found.values()), None)


def make_genesis(out: Path, dirs: list[Path], n: int, genesis_args: list[str]) -> bytes:
    have = existing_genesis(dirs)
    if have is not None:
        print(f"genesis kept: {GENESIS_FILE} already in the node dirs")
        (out / GENESIS_FILE).write_bytes(have)
        return have
    args = genesis_args or ["--dataset", "digits"]
    target = out / GENESIS_FILE
    print(node_py("genesis", "--nodes", str(n), "--allow-list", ",".join(map(str, dirs)),
                  "--out", str(target), "--force", *args).strip())
    return target.read_bytes()


def owner(text: str) -> tuple[int, int]:
    try:
        uid, _, gid = text.partition(":")
        return int(uid), int(gid or uid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected UID:GID, e.g. 10001:10001") from None


def hand_over(dirs: list[Path], uid_gid: tuple[int, int]) -> None:
    """Give the node dirs and what this wrote in them to the node's user (``--owner``)."""
    for d in dirs:
        for p in (d, d / KEY_FILE, d / GENESIS_FILE):
            os.chown(p, *uid_gid)
        os.chmod(d, 0o700)


def secret(name: str, files: dict[str, Path], what: str) -> str:
    data = "".join(f"  {key}: {base64.b64encode(path.read_bytes()).decode()}\n" for key, path in files.items())
    return (f"# written by deploy/mknet.py: {what} (keep private)\n"
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels:\n{LABELS}"
            f"type: Opaque\ndata:\n{data}")


def pod_names(i: int, namespace: str) -> str:
    """The DNS names of pod i, and the headless Service's own name (the peers' name)."""
    pod, svc = f"{POD_PREFIX}-{i}.{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}.svc"
    return ",".join((pod, pod + ".cluster.local", svc, svc + ".cluster.local"))


def make_tls(out: Path, dirs: list[Path], namespace: str) -> dict[str, Path]:
    """``node.py tls init`` for the node dirs (once: an existing OUT/tls is kept); the Secret's files."""
    tls = out / "tls"
    n = len(dirs)
    if not (tls / "ca.pem").exists():
        try:
            node_py("tls", "--help")
        except NetError:
            raise NetError(f"{ROOT / 'node.py'} has no 'tls' command (a version without TLS): drop --tls") from None
        print(node_py("tls", "init", "--out", str(tls), "--nodes", str(n), "--network", SERVICE,
                      "--data-dirs", ",".join(map(str, dirs)), "--hosts",
                      *(pod_names(i, namespace) for i in range(n))).strip())
    files = {TLS_CA: tls / TLS_CA}
    for i in range(n):
        files.update({name.format(i=i): tls / name.format(i=i) for name in (TLS_CERT, TLS_KEY)})
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise NetError(f"{missing[0]} is missing: {tls} was made for fewer nodes; move it away to make a new CA")
    return files


def k8s_manifests(dirs: list[Path], genesis: bytes) -> dict[str, str]:
    """The Secret with every node key and the ConfigMap with the genesis, as YAML text."""
    keys = secret(KEYS_SECRET, {f"key-{i}.pem": d / KEY_FILE for i, d in enumerate(dirs)},
                  "node keys, key-<ordinal>.pem")
    body = "".join(f"    {line}\n" for line in genesis.decode().splitlines())
    configmap = (f"# written by deploy/mknet.py: the genesis every node shares\n"
                 f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {GENESIS_CONFIGMAP}\n  labels:\n{LABELS}"
                 f"data:\n  {GENESIS_FILE}: |\n{body}")
    return {"secret-keys.yaml": keys, "configmap-genesis.yaml": configmap}


def main(argv: list[str]) -> int:
    genesis_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, genesis_args = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(prog="mknet.py", description=__doc__.split("\n")[0])
    p.add_argument("out", help="directory of the node dirs node-0 .. node-<N-1> (created)")
    p.add_argument("--nodes", type=int, required=True, help="nodes of the network")
    p.add_argument("--owner", type=owner, help="UID:GID to own the node dirs (when run as root)")
    p.add_argument("--k8s", metavar="DIR", help="also write the Secret and ConfigMap manifests there")
    p.add_argument("--tls", action="store_true", help="with --k8s: also the network CA, node certificates "
                                                      "(node.py tls init) and their Secret")
    p.add_argument("--namespace", default="learningchain", help="the pods' namespace, named in the "
                                                                "certificates (default learningchain)")
    args = p.parse_args(argv)
    if args.nodes < 1:
        p.error("--nodes must be at least 1")
    if args.tls and not args.k8s:
        p.error("--tls writes the Secret of deploy/k8s/tls: give --k8s DIR too")
    out = Path(args.out)
    try:
        dirs = node_dirs(out, args.nodes)
        out.mkdir(parents=True, exist_ok=True)
        make_keys(dirs)
        genesis = make_genesis(out, dirs, args.nodes, genesis_args)
        for d in dirs:
            if not (d / GENESIS_FILE).exists():
                (d / GENESIS_FILE).write_bytes(genesis)
        if args.owner:
            hand_over(dirs, args.owner)
        if args.k8s:
            k8s = Path(args.k8s)
            k8s.mkdir(parents=True, exist_ok=True)
            manifests = k8s_manifests(dirs, genesis)
            if args.tls:
                manifests["secret-tls.yaml"] = secret(TLS_SECRET, make_tls(out, dirs, args.namespace),
                                                      "the network CA and node certificates, node<i>.pem/.key")
            for name, text in manifests.items():
                path = k8s / name
                path.unlink(missing_ok=True)  # written anew, mode 600 from the start: keys inside
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
                    fh.write(text)
                print(f"wrote {k8s / name}")
    except (NetError, OSError) as exc:
        print(f"mknet.py: {exc}", file=sys.stderr)
        return 1
    print(f"{args.nodes} node dirs under {out} share genesis {out / GENESIS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
