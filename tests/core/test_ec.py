"""secp256k1 points for secure aggregation (learningchain/core/ec.py): parsing
refuses every malformed form, arithmetic matches the group law, and a DLEQ
proof verifies only for the one pair of discrete logs it was made for."""
import pytest
from cryptography.hazmat.primitives.asymmetric import ec as openssl_ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from learningchain.core import ec


def test_points_and_scalars_round_trip_and_bad_forms_are_refused():
    p = ec.base_mul(7)
    assert ec.parse_point(ec.point_hex(p)).format() == p.format()
    for bad in (None, 7, "", "04" + "00" * 64, ec.point_hex(p).upper(), "02" + "00" * 32, ec.point_hex(p)[:-2]):
        with pytest.raises(ValueError):
            ec.parse_point(bad)
    assert ec.parse_scalar(ec.scalar_hex(5)) == 5
    for bad in ("ab", "F" * 64, format(ec.N, "064x"), 5, "zz" * 32):
        with pytest.raises(ValueError):
            ec.parse_scalar(bad)


def test_group_law_and_the_point_at_infinity():
    assert ec.same(ec.add(ec.base_mul(3), ec.base_mul(4)), ec.base_mul(7))
    assert ec.same(ec.mul(ec.base_mul(3), 5), ec.base_mul(15))
    assert ec.add(ec.base_mul(3), ec.base_mul(ec.N - 3)) is None
    assert ec.base_mul(0) is None and ec.mul(ec.base_mul(2), ec.N) is None
    assert ec.same(ec.add(None, ec.base_mul(2), None), ec.base_mul(2))


def test_base_mul_agrees_with_openssl():
    for k in (1, 2, 0xDEADBEEF, ec.N - 1):
        theirs = openssl_ec.derive_private_key(k, openssl_ec.SECP256K1()).public_key()
        assert theirs.public_bytes(Encoding.X962, PublicFormat.CompressedPoint) == ec.point_bytes(ec.base_mul(k))


def test_ecdh_x_coordinate_agrees_with_openssl():
    a, b = 0x1234567, 0x7654321
    mine = ec.point_bytes(ec.mul(ec.base_mul(b), a))[1:]
    sk = openssl_ec.derive_private_key(a, openssl_ec.SECP256K1())
    peer = openssl_ec.derive_private_key(b, openssl_ec.SECP256K1()).public_key()
    assert sk.exchange(openssl_ec.ECDH(), peer) == mine


def test_dleq_verifies_for_its_statement_only():
    a, p = 0xABCDEF12345, ec.base_mul(0x5555)
    k_point, proof = ec.dleq_prove(a, p)
    big_a = ec.base_mul(a)
    assert ec.same(k_point, ec.mul(p, a))
    assert ec.dleq_verify(big_a, p, k_point, proof)
    assert not ec.dleq_verify(big_a, p, ec.mul(p, a + 1), proof)          # a wrong ECDH value
    assert not ec.dleq_verify(ec.base_mul(a + 1), p, k_point, proof)      # another key
    assert not ec.dleq_verify(big_a, ec.base_mul(0x5556), k_point, proof)  # another point
    bumped = {"c": proof["c"], "z": ec.scalar_hex(ec.parse_scalar(proof["z"]) + 1)}
    assert not ec.dleq_verify(big_a, p, k_point, bumped)
    for bad in (None, {}, {"c": proof["c"]}, {"c": proof["c"], "z": "00" * 32}, {**proof, "x": 1},
                {"c": "zz", "z": proof["z"]}):
        assert not ec.dleq_verify(big_a, p, k_point, bad)


def test_a_proof_of_knowledge_verifies_only_for_its_point_round_and_sender():
    sender, other = bytes.fromhex(ec.point_hex(ec.base_mul(11))), bytes.fromhex(ec.point_hex(ec.base_mul(12)))
    a = 0x1234567
    p, proof = ec.base_mul(a), ec.pok_prove(a, 3, sender)
    assert ec.pok_verify(p, 3, sender, proof)
    assert proof == ec.pok_prove(a, 3, sender)  # deterministic nonce
    assert not ec.pok_verify(p, 4, sender, proof)            # another round
    assert not ec.pok_verify(p, 3, other, proof)             # another sender: a copied proof
    assert not ec.pok_verify(ec.base_mul(a + 1), 3, sender, proof)  # another point (an offset key)
    z = int(proof["z"], 16)
    for bad in ({**proof, "z": ec.scalar_hex(z + 1)}, {**proof, "c": ec.scalar_hex(0)},
                {**proof, "z": ec.scalar_hex(0)}, {"c": proof["c"]}, {**proof, "e": "00"},
                {**proof, "z": "ff" * 32}, None, [proof["c"], proof["z"]]):
        assert not ec.pok_verify(p, 3, sender, bad)


def test_the_independent_verifier_accepts_the_same_proofs_of_knowledge():
    from tests.independent_verifier import point, pok_ok
    sender = ec.point_hex(ec.base_mul(11))
    for a in (1, 2, ec.N - 1, 0xdeadbeef):
        proof = ec.pok_prove(a, 7, bytes.fromhex(sender))
        pt = point(ec.point_hex(ec.base_mul(a)))
        assert pok_ok(pt, 7, sender, proof) and not pok_ok(pt, 8, sender, proof)
