"""``node.py tls init`` and the ``--tls-*`` flags of ``node.py run``: the files
it writes (modes, chain of trust, the binding to each data dir's key), what it
refuses in one line, and a real ``node.py run`` process serving HTTPS."""
from __future__ import annotations

import signal
import stat
import subprocess
import sys

import pytest
import requests
from cryptography import x509

from learningchain.cli import main as cli
from learningchain.cli.processes import free_port
from learningchain.node import keyfile, tls
from tests.served import wait_for

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _call(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_tls_init_writes_a_ca_and_bound_node_certificates(tmp_path, capsys):
    out = tmp_path / "pki"
    dirs = [tmp_path / "n0", tmp_path / "n1"]
    code, printed, err = _call(["tls", "init", "--out", str(out), "--nodes", "2", "--hosts", "10.1.0.1,lc-0.lc",
                                "10.1.0.2", "--data-dirs", ",".join(map(str, dirs))], capsys)
    assert code == 0, err
    ca = _cert(out / "ca.pem")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    for i, d in enumerate(dirs):
        cert = _cert(out / f"node{i}.pem")
        cert.verify_directly_issued_by(ca)
        assert tls.chain_identity(cert) == keyfile.load_key(d).public_hex  # the key was created in d
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {f"10.1.0.{i + 1}", "127.0.0.1"}
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        assert not cert.extensions.get_extension_for_oid(tls.BINDING_OID).critical
    assert "lc-0.lc" in _cert(out / "node0.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    for name in ("ca.key", "node0.key", "node1.key"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert "node1" in printed and "--tls-ca" in printed
    # again: nothing overwritten, one line; --first adds a node under the same CA
    before = (out / "node0.pem").read_bytes()
    code, _, err = _call(["tls", "init", "--out", str(out), "--nodes", "1"], capsys)
    assert code == 2 and "refusing to overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "node0.pem").read_bytes() == before
    code, printed, err = _call(["tls", "init", "--out", str(out), "--nodes", "1", "--first", "2"], capsys)
    assert code == 0 and "reused" in printed, err
    _cert(out / "node2.pem").verify_directly_issued_by(ca)
    assert tls.chain_identity(_cert(out / "node2.pem")) == keyfile.load_key(out / "node2").public_hex
    code, _, err = _call(["tls", "init", "--out", str(tmp_path / "x"), "--nodes", "2", "--hosts", "a", "b", "c"],
                         capsys)
    assert code == 2 and "--hosts: 3 given for --nodes 2" in err


@pytest.fixture
def pki(tmp_path, capsys):
    code, _, err = _call(["tls", "init", "--out", str(tmp_path / "pki"), "--nodes", "2"], capsys)
    assert code == 0, err
    return tmp_path / "pki"


@pytest.mark.parametrize("extra, says", [
    (["--tls-cert", "P/node0.pem"], "missing --tls-key, --tls-ca"),
    (["--tls-cert", "P/node1.pem", "--tls-key", "P/node1.key", "--tls-ca", "P/ca.pem"], "bound to chain key"),
    (["--tls-cert", "P/node0.pem", "--tls-key", "P/node1.key", "--tls-ca", "P/ca.pem"], "do not fit together"),
    (["--tls-cert", "P/node0.pem", "--tls-key", "P/node0.key", "--tls-ca", "P/ca.pem",
      "--peers", "http://127.0.0.1:5001"], "the peers are https:// URLs"),
    (["--peers", "https://127.0.0.1:5001"], "an https:// peer needs --tls-cert"),
    (["--tls-cert", "P/node0.pem", "--tls-key", "P/node0.key", "--tls-ca", "P/ca.pem",
      "--advertise-url", "http://10.0.0.1:5000"], "reached over https://"),
    (["--tls-cert", "P/node0.pem", "--tls-key", "P/nope.key", "--tls-ca", "P/ca.pem"], "no such file"),
])
def test_run_refuses_tls_settings_that_cannot_work_in_one_line(pki, capsys, extra, says):
    argv = ["run", "--data-dir", str(pki / "node0"), "--port", str(free_port())]
    code, _, err = _call(argv + [a.replace("P/", f"{pki}/") for a in extra], capsys)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_run_with_tls_flags_serves_https_only(pki):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "node.py"), "run", "--data-dir", str(pki / "node0"),
                             "--port", str(port), "--tls-cert", str(pki / "node0.pem"), "--tls-key",
                             str(pki / "node0.key"), "--tls-ca", str(pki / "ca.pem")],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"https://127.0.0.1:{port}"

    def tip():
        try:
            return requests.get(url + "/tip", timeout=2, verify=str(pki / "ca.pem")).json()
        except requests.ConnectionError:
            return None
    try:
        assert wait_for(tip, 30, "the node to answer over HTTPS")["height"] == 0
        status = requests.get(url + "/status", timeout=5, verify=str(pki / "ca.pem")).json()
        assert status["pubkey"] == tls.chain_identity(_cert(pki / "node0.pem"))
        r = requests.get(f"http://127.0.0.1:{port}/tip", timeout=5)
        assert r.status_code == 400 and r.json()["reason"] == "tls-required"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert f"on https://127.0.0.1:{port}" in output


def test_an_untrusted_tls_node_is_one_line_naming_the_ca_setting():
    import requests
    exc = requests.exceptions.SSLError("certificate verify failed")
    exc.node_url = "https://10.0.0.1:5000"
    line = cli.one_line(exc)
    assert "TLS with https://10.0.0.1:5000 failed" in line and "REQUESTS_CA_BUNDLE" in line
