"""TLS between peers: the network CA, node certificates bound to chain identities, and the contexts that use them.

A network has one CA (ECDSA P-256, self-signed, ``CA:true, pathlen:0``) that
signs one certificate per node (``node.py tls init``, :mod:`learningchain.cli.tls_cmd`).
The CA alone says "a node of this network"; it does not say *which* chain
identity the TLS endpoint is. So every node certificate is also **bound to the
node's chain key** (its secp256k1 ``node_key.pem``):

* its subjectAltName carries the URI ``learningchain:<public key hex>``
  (:data:`URI_PREFIX`, the compressed key, 66 hex digits) beside the node's
  DNS names and IP addresses;
* a non-critical extension :data:`BINDING_OID` holds
  ``SEQUENCE { OCTET STRING pubkey (33 bytes), OCTET STRING signature }``
  (DER), where ``signature`` is the chain key's low-S DER ECDSA signature
  (:func:`learningchain.core.crypto.verify`) of
  ``SHA-256(BINDING_TAG || SubjectPublicKeyInfo DER of the certificate)``.

:func:`check_binding` accepts a certificate only when the extension's key is
the one in the URI and its signature verifies over *this* certificate's
public key. A certificate the CA signed for another key that names a victim's
chain key (copying the victim's extension, or signing with its own chain key)
is refused: only the holder of the victim's chain key can produce the
signature. Peers run the check on every new TLS connection, after the
handshake and before any request goes out on it (client side,
:mod:`learningchain.node.p2p.httpclient`) or is read from it (server side, for
a client that presents a certificate:
:mod:`learningchain.node.web.http_server`); the verified key is what the peer
handshake logs as the peer's identity.

The OID is a UUID OID (ITU-T X.667: ``2.25.<UUID as an integer>``), a private
arc that needs no registration.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from learningchain.core import crypto
from learningchain.core.errors import ConfigError

#: the X.509 extension that carries the chain key's signature of the certificate's key
BINDING_OID = x509.ObjectIdentifier("2.25.57856802730546673622351902996570059668")
#: the subjectAltName URI that names the node's chain public key
URI_PREFIX = "learningchain:"
#: domain separation: this signature can never be mistaken for a tx or block signature
BINDING_TAG = b"learningchain-tls-binding-v1\x00"
#: a node certificate's default lifetime (days); the CA's is ten years
NODE_DAYS, CA_DAYS = 825, 3650
DEFAULT_NAMES = ("127.0.0.1", "localhost")


class IdentityError(ssl.SSLError):
    """A certificate not bound to the chain key it names (an ``ssl.SSLError``, so
    HTTP clients report it as a TLS failure)."""


# --- the binding ---------------------------------------------------------------------------
def binding_digest(spki_der: bytes) -> bytes:
    return hashlib.sha256(BINDING_TAG + spki_der).digest()


def _octets(data: bytes) -> bytes:
    assert len(data) < 256
    return b"\x04" + (bytes((len(data),)) if len(data) < 128 else b"\x81" + bytes((len(data),))) + data


def encode_binding(pubkey_hex: str, signature_hex: str) -> bytes:
    body = _octets(bytes.fromhex(pubkey_hex)) + _octets(bytes.fromhex(signature_hex))
    return b"\x30" + (bytes((len(body),)) if len(body) < 128 else b"\x81" + bytes((len(body),))) + body


def _read_tlv(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    if at + 2 > len(data) or data[at] != tag:
        raise IdentityError("chain-identity extension is not valid DER")
    length, at = data[at + 1], at + 2
    if length == 0x81:
        if at >= len(data) or data[at] < 128:
            raise IdentityError("chain-identity extension is not valid DER")
        length, at = data[at], at + 1
    elif length > 0x80:
        raise IdentityError("chain-identity extension is not valid DER")
    if at + length > len(data):
        raise IdentityError("chain-identity extension is not valid DER")
    return data[at:at + length], at + length


def decode_binding(data: bytes) -> tuple[str, str]:
    """(pubkey hex, signature hex) of the extension's value; IdentityError if malformed."""
    body, end = _read_tlv(data, 0, 0x30)
    if end != len(data):
        raise IdentityError("chain-identity extension has trailing bytes")
    pub, at = _read_tlv(body, 0, 0x04)
    sig, at = _read_tlv(body, at, 0x04)
    if at != len(body):
        raise IdentityError("chain-identity extension has trailing bytes")
    return pub.hex(), sig.hex()


def claimed_identity(cert: x509.Certificate) -> str:
    """The chain public key the certificate's ``learningchain:`` URI names (not yet verified)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("certificate has no subjectAltName") from None
    uris = [u[len(URI_PREFIX):] for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(URI_PREFIX)]
    if len(uris) != 1:
        raise IdentityError(f"certificate names {len(uris)} chain identities (one {URI_PREFIX} URI expected)")
    return uris[0]


def chain_identity(cert: x509.Certificate) -> str:
    """The chain public key (hex) ``cert`` is bound to; IdentityError unless the
    binding extension's key is the one its URI names and its signature by that
    key verifies over this certificate's SubjectPublicKeyInfo."""
    pubkey = claimed_identity(cert)
    try:
        ext = cert.extensions.get_extension_for_oid(BINDING_OID).value
    except x509.ExtensionNotFound:
        raise IdentityError("certificate carries no chain-key signature (binding extension missing)") from None
    signed_pub, signature = decode_binding(ext.value)
    if signed_pub != pubkey:
        raise IdentityError("certificate's binding extension is for another chain key than its URI names")
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        crypto.verify(pubkey, binding_digest(spki), signature)
    except (crypto.InvalidKey, crypto.InvalidSignature) as exc:
        raise IdentityError(f"certificate is not bound to chain key {pubkey[:16]}...: {exc}") from None
    return pubkey


def check_binding(cert_der: bytes | None) -> str:
    """:func:`chain_identity` of a DER certificate (what ``getpeercert(True)`` gives)."""
    if not cert_der:
        raise IdentityError("peer presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        raise IdentityError("peer certificate does not parse") from None
    return chain_identity(cert)


# --- issuing ---------------------------------------------------------------------------------
def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_ca(network: str, days: int = CA_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA for ``network`` (CA:true, pathlen 0: it signs node certificates only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LearningChain"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{network} network CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_node_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, chain_key: crypto.PrivateKey,
                    names: list[str], label: str, days: int = NODE_DAYS,
                    tls_key: ec.EllipticCurvePrivateKey | None = None
                    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A node's TLS key (P-256, new unless given) and certificate: signed by the
    CA, valid for ``names`` (IPs and DNS names), for server and client auth, and
    bound to ``chain_key`` (the URI and the signed extension, see the module)."""
    tls_key = tls_key or ec.generate_private_key(ec.SECP256R1())
    spki = tls_key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    signature = chain_key.sign_digest(binding_digest(spki))
    alt = [_general_name(n) for n in dict.fromkeys(names)]
    alt.append(x509.UniformResourceIdentifier(URI_PREFIX + chain_key.public_hex))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LearningChain"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, f"{label} {chain_key.address}")]))
            .issuer_name(ca_cert.subject).public_key(tls_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(tls_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(x509.UnrecognizedExtension(BINDING_OID, encode_binding(chain_key.public_hex, signature)),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return tls_key, cert


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path: Path, data: bytes, secret: bool = False) -> None:
    """Write a new file (never overwrite); mode 0600 for a ``secret`` (a key), else 0644."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# --- what a running node uses ---------------------------------------------------------------
@dataclass(frozen=True)
class TlsConfig:
    """A node's TLS material: its certificate and key, and the network CA it
    pins (peers' certificates must chain to it; nothing else is trusted)."""
    cert: str
    key: str
    ca: str

    @property
    def client_cert(self) -> tuple[str, str]:
        """What ``requests`` presents as the client certificate (mutual TLS)."""
        return self.cert, self.key

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.2+, our certificate; a client certificate is asked for and, when
        given, must chain to the CA (the binding is checked after the handshake)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def identity(self) -> str:
        """The chain key our own certificate is bound to (IdentityError if none)."""
        return chain_identity(x509.load_pem_x509_certificate(Path(self.cert).read_bytes()))


def load_tls(cert: str | None, key: str | None, ca: str | None, pubkey: str | None = None) -> TlsConfig | None:
    """The node's :class:`TlsConfig` from its three flags, or None without them
    (plain HTTP). ConfigError (one line) for a partial set, a missing or
    unreadable file, a key file others can read, a certificate the CA did not
    sign, or (with ``pubkey``) one bound to another chain key than ours: that
    node would be refused by every peer, so it must not start."""
    given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise ConfigError(f"TLS needs --tls-cert, --tls-key and --tls-ca together; missing {', '.join(missing)} "
                          f"(make them with 'node.py tls init')")
    for flag, value in given.items():
        if not Path(value).is_file():
            raise ConfigError(f"{flag} {value}: no such file (make it with 'node.py tls init')")
    mode = stat.S_IMODE(Path(key).stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"--tls-key {key} is readable by others (mode {mode:o}): run 'chmod 600 {key}'")
    config = TlsConfig(str(cert), str(key), str(ca))
    try:
        config.server_context()
        ca_cert = x509.load_pem_x509_certificate(Path(ca).read_bytes())
        own = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        own.verify_directly_issued_by(ca_cert)
        bound = chain_identity(own)
    except (ssl.SSLError, ValueError, TypeError, OSError) as exc:
        if isinstance(exc, IdentityError):
            raise ConfigError(f"--tls-cert {cert}: {exc}") from None
        why = getattr(exc, "reason", None) or exc
        raise ConfigError(f"--tls-cert/--tls-key/--tls-ca do not fit together: {why} (the certificate must "
                          f"be signed by the CA, the key must be the certificate's)") from None
    except Exception as exc:  # cryptography's InvalidSignature: another CA
        raise ConfigError(f"--tls-cert {cert} is not signed by --tls-ca {ca}: {type(exc).__name__}") from None
    if pubkey is not None and bound != pubkey:
        raise ConfigError(f"--tls-cert {cert} is bound to chain key {bound[:16]}..., not this node's "
                          f"{pubkey[:16]}...: issue it from this data dir ('node.py tls init --data-dirs ...')")
    return config
