"""``node.py tls init`` (a network CA and one certificate per node) and the ``--tls-*`` flags of ``node.py run``.

``tls init --out DIR --nodes N`` writes, in DIR:

* ``ca.pem`` (the network CA every node pins with ``--tls-ca``) and ``ca.key``
  (mode 600; keep it offline once the nodes have their certificates). A DIR
  that already holds both is reused: ``--first K`` then adds nodes K.. to
  that network;
* ``node<i>.pem`` and ``node<i>.key`` (mode 600) for each node: valid for its
  ``--hosts`` names (and 127.0.0.1, localhost), and bound to the chain key of
  its data dir (``node_key.pem``, created there if missing, as ``keygen``
  does): see :mod:`learningchain.node.tls`.

Nothing is ever overwritten: an existing node file stops the command before it
writes anything.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from learningchain.cli.argtypes import positive_int
from learningchain.core.errors import ConfigError


def add_tls_flags(p: argparse.ArgumentParser) -> None:
    """The TLS flags of ``node.py run`` (all three, or none for plain HTTP)."""
    p.add_argument("--tls-cert", metavar="FILE", help="this node's TLS certificate (node.py tls init); with "
                                                      "--tls-key and --tls-ca the node serves HTTPS only and talks "
                                                      "to its peers over HTTPS")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (mode 600)")
    p.add_argument("--tls-ca", metavar="FILE", help="the network CA (ca.pem): peers' certificates must chain to it "
                                                    "and be bound to their chain key")


def run_tls(args: argparse.Namespace):
    """The :class:`~learningchain.node.tls.TlsConfig` of ``node.py run`` (None:
    plain HTTP), checked against this node's key; ConfigError for peers or an
    --advertise-url whose scheme does not match (an HTTPS node's are https://)."""
    from learningchain.node import keyfile
    from learningchain.node.tls import load_tls
    given = (args.tls_cert, args.tls_key, args.tls_ca)
    config = load_tls(*given, pubkey=keyfile.load_key(args.data_dir).public_hex) if any(given) else None
    scheme = "https" if config else "http"
    advertised = getattr(args, "advertise_url", None)
    if advertised and not advertised.lower().startswith(scheme + "://"):
        raise ConfigError(f"--advertise-url {advertised}: " + ("a node with --tls-* is reached over https://"
                                                               if config else "https:// needs --tls-cert, "
                                                                              "--tls-key and --tls-ca"))
    for url in args.peers:
        if not url.startswith(scheme + "://"):
            raise ConfigError(f"--peers {url}: " + ("with --tls-cert/--tls-key/--tls-ca the peers are https:// URLs"
                                                     if config else "an https:// peer needs --tls-cert, --tls-key "
                                                                    "and --tls-ca (node.py tls init)"))
    return config


def register(sub) -> None:
    p = sub.add_parser("tls", help="TLS material for a network: a CA and per-node certificates")
    actions = p.add_subparsers(dest="tls_command", metavar="ACTION", required=True,
                               help="init: the CA and the node certificates")
    init = actions.add_parser("init", help="create the network CA (or reuse DIR's) and one certificate per node")
    init.add_argument("--out", required=True, metavar="DIR", help="directory for ca.pem, ca.key, node<i>.pem "
                                                                  "and node<i>.key (created if missing)")
    init.add_argument("--nodes", type=positive_int, required=True, help="certificates to issue")
    init.add_argument("--hosts", nargs="+", metavar="NAMES",
                      help="the names peers use for each node: one argument per node (or one for all), each a "
                           "comma-separated list of IP addresses and DNS names, e.g. --hosts 10.0.0.1 10.0.0.2; "
                           "127.0.0.1 and localhost are always added")
    init.add_argument("--data-dirs", nargs="+", metavar="DIR",
                      help="each node's data dir, whose chain key (node_key.pem, created if missing) the "
                           "certificate is bound to; space- or comma-separated (default DIR/node<i>)")
    init.add_argument("--first", type=int, default=0, metavar="K", help="number the nodes from K (default 0), "
                                                                        "to add nodes to an existing DIR's CA")
    init.add_argument("--network", default="learningchain", help="the CA's name (default learningchain)")
    init.add_argument("--days", type=positive_int, default=825, help="node certificates' lifetime (default 825)")
    init.set_defaults(func=cmd_tls_init)


def _per_node(values: list[str] | None, n: int, flag: str, split_commas: bool) -> list[str] | None:
    if not values:
        return None
    if split_commas:
        values = [v for arg in values for v in arg.split(",") if v]
    if len(values) == 1 and not split_commas:
        return values * n
    if len(values) != n:
        raise ConfigError(f"{flag}: {len(values)} given for --nodes {n} (give one per node)")
    return values


def cmd_tls_init(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from learningchain.node import keyfile, tls
    n, out, first = args.nodes, Path(args.out), args.first
    if args.days > 36500:  # past year 9999 x509 cannot say it: refused before anything is written
        raise ConfigError(f"--days {args.days}: at most 36500 (100 years)")
    if first < 0:
        raise ConfigError("--first must be 0 or more")
    hosts = _per_node(args.hosts, n, "--hosts", split_commas=False)
    dirs = _per_node(args.data_dirs, n, "--data-dirs", split_commas=True)
    labels = [f"node{first + i}" for i in range(n)]
    dirs = dirs or [str(out / label) for label in labels]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    ca_pem, ca_key_path = out / "ca.pem", out / "ca.key"
    if ca_pem.exists() != ca_key_path.exists():
        raise ConfigError(f"{out} holds only one of ca.pem and ca.key: restore the other or use another --out")
    taken = [str(out / f"{label}{ext}") for label in labels for ext in (".pem", ".key")
             if (out / f"{label}{ext}").exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists: refusing to overwrite (use --first to add nodes, or "
                          f"another --out)")
    out.mkdir(parents=True, exist_ok=True)
    if ca_pem.exists():
        try:
            ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
            ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{ca_pem} or {ca_key_path} is not a PEM certificate / key") from None
        print(f"CA        {ca_pem} (reused)")
    else:
        ca_key, ca_cert = tls.new_ca(args.network)
        tls.write_file(ca_key_path, tls.key_pem(ca_key), secret=True)
        tls.write_file(ca_pem, tls.cert_pem(ca_cert))
        print(f"CA        {ca_pem} (key {ca_key_path}, mode 600: keep it offline)")
    for i, label in enumerate(labels):
        chain_key = keyfile.load_or_create_key(dirs[i])
        names = [h for h in (hosts[i].split(",") if hosts else []) if h] + list(tls.DEFAULT_NAMES)
        key, cert = tls.issue_node_cert(ca_key, ca_cert, chain_key, names, label, days=args.days)
        tls.write_file(out / f"{label}.key", tls.key_pem(key), secret=True)
        tls.write_file(out / f"{label}.pem", tls.cert_pem(cert))
        print(f"{label:<9} {out / label}.pem for {', '.join(dict.fromkeys(names))}; chain key "
              f"{chain_key.public_hex[:16]}... of {dirs[i]}")
    print(f"run each node with --data-dir <its dir> --tls-cert {out}/node<i>.pem --tls-key {out}/node<i>.key "
          f"--tls-ca {ca_pem}, and https:// peer URLs")
    return 0
