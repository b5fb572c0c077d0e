"""The node's key file (learningchain/node/keyfile.py): written with mode 0600,
round-trips, and a missing, corrupt or readable-by-others file is refused with
one line saying what to do."""
import os
import stat

import pytest

from learningchain.core import crypto
from learningchain.core.errors import KeyFileError
from learningchain.node import keyfile

DIGEST = bytes(range(32))


# --- key files ---------------------------------------------------------------------------
def test_save_key_writes_mode_0600_and_round_trips(tmp_path):
    key = crypto.PrivateKey.generate()
    path = keyfile.save_key(key, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = keyfile.load_key(tmp_path)
    assert loaded.public_hex == key.public_hex
    crypto.verify(key.public_hex, DIGEST, loaded.sign_digest(DIGEST))
    assert "PRIVATE" not in repr(loaded)


def load_error(data_dir) -> str:
    with pytest.raises(KeyFileError) as exc:
        keyfile.load_key(data_dir)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_load_key_refuses_a_missing_file(tmp_path):
    message = load_error(tmp_path)
    assert message.startswith("no key file at") and "keygen --data-dir" in message


def test_load_key_refuses_a_file_readable_by_others(tmp_path):
    path = keyfile.save_key(crypto.PrivateKey.generate(), tmp_path)
    os.chmod(path, 0o644)
    message = load_error(tmp_path)
    assert "readable by others (mode 644)" in message and f"chmod 600 {path}" in message


def test_load_key_refuses_a_corrupt_file(tmp_path):
    path = keyfile.key_path(tmp_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"-----BEGIN EC PRIVATE KEY-----\nnot base64 at all\n-----END EC PRIVATE KEY-----\n")
    message = load_error(tmp_path)
    assert "is not a valid PEM secp256k1 key" in message and "restore it from a backup" in message
    # a key file that cannot be read as a file at all (here: a directory) is the same one line
    other = tmp_path / "other"
    keyfile.key_path(other).mkdir(parents=True, mode=0o700)
    assert "is not a valid PEM secp256k1 key" in load_error(other)
