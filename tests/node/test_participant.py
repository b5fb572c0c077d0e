"""The learner role: trains from G(r-1), signs a valid update; roles change it as named."""
import numpy as np
import pytest

from learningchain.core.crypto import PrivateKey
from learningchain.core.encoding import weights_digest
from learningchain.core.errors import ConfigError
from learningchain.learning.models import build_model, default_spec
from learningchain.node.participant import Participant, Role

SPEC = default_spec("digits", "softmax")
RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 64)).astype(np.float32)
Y = RNG.integers(0, 10, size=60)
G0 = build_model(SPEC).initial_weights()
DIGEST = weights_digest(G0)


def update(role=Role(), secret=1):
    p = Participant(PrivateKey.from_secret(secret), SPEC, X, Y, role, seed=5)
    return p, p.make_update(1, G0, DIGEST, 1234)


def test_honest_update_is_signed_valid_and_deterministic():
    _, tx = update()
    tx.check(build_model(SPEC).expected_shapes(), 10**6)
    assert tx.round == 1 and tx.base == DIGEST and tx.num_samples == 60
    assert update()[1].id == tx.id
    assert weights_digest(tx.decoded_weights) != DIGEST  # it trained


def test_sign_flip_points_the_other_way():
    honest = update()[1].decoded_weights
    flipped = update(Role(attack="sign-flip"))[1].decoded_weights
    for name in G0:
        d_h, d_f = honest[name] - G0[name], flipped[name] - G0[name]
        assert float(np.sum(d_h * d_f)) < 0


def test_dp_spends_privacy_and_changes_the_update():
    p, tx = update(Role(dp_sigma=1.0, dp_clip=0.5))
    eps, delta = p.privacy_spent()
    assert eps > 0 and delta == 1e-5
    assert tx.id != update()[1].id
    assert update()[0].privacy_spent() is None


@pytest.mark.parametrize("kwargs", [dict(attack="nope"), dict(dp_sigma=1.0), dict(dp_sigma=-1.0)])
def test_bad_roles_are_refused(kwargs):
    with pytest.raises(ConfigError):
        Role(**kwargs)


def test_data_must_fit_the_model():
    with pytest.raises(ConfigError, match="features"):
        Participant(PrivateKey.from_secret(1), SPEC, X[:, :10], Y)


def test_skip_decision_follows_the_delta_norm_threshold():
    """A node skips exactly when ||w - G(r-1)||_2 is below its threshold; the skip
    is a signed tx without weights, the same sender, round and base."""
    from learningchain.node.participant import delta_norm
    p, tx = update()
    norm = delta_norm(tx.decoded_weights, G0)
    _, above = update(Role(skip_threshold=norm * 1.01))
    _, below = update(Role(skip_threshold=norm * 0.99))
    assert above.is_skip and not below.is_skip and not tx.is_skip
    assert (above.sender, above.round, above.base, above.num_samples) == (tx.sender, 1, DIGEST, 60)
    assert below.id == tx.id  # under the threshold nothing changes


def test_own_update_refused_as_mempool_full_is_offered_again_not_dropped(tmp_path, monkeypatch):
    """Issue 10 item 6: a full mempool refused our update and the round was marked
    done for good. Now the same signed tx is offered again (never retrained) and
    gets in once there is room; our own key outranks strangers in the pool."""
    from learningchain.node import threads as node_threads
    from learningchain.node.threads import participate_once
    from learningchain.node.service import Node
    from tests.helpers import KEYS, tiny_config, update_tx
    from tests.node.test_service import write_partition
    monkeypatch.setattr(node_threads, "OWN_RETRY_S", 0.0)
    node = Node(tmp_path / "n", tiny_config(), dataset_path=write_partition(tmp_path), quiet=True, port=5996)
    try:
        pool = node.ledger.mempool
        stranger = update_tx(node.chain, KEYS[0])
        pool.add(stranger, node.chain)
        pool.max_count = 1  # full of a stranger's tx, and our key not yet preferred
        participate_once(node)
        retry = node.own_updates.retry
        assert retry is not None and len(pool) == 1 and stranger.id in pool
        participate_once(node)  # still full, no priority: the same tx is kept for later
        assert node.own_updates.retry[0].id == retry[0].id
        pool.priority_senders.add(node.pubkey)  # what participant_loop does at start
        participate_once(node)
        assert [t.id for t in pool] == [retry[0].id] and node.own_updates.retry is None and pool.evicted == 1
    finally:
        node.stop()


def test_secure_aggregation_delta_is_the_trained_update_minus_g0_with_dp_and_attacks_applied():
    """make_delta (the SA input before clipping and quantisation) = what make_update
    would send, minus G(r-1): same training, DP on the delta (one release counted),
    the attack applied."""
    p = Participant(PrivateKey.from_secret(1), SPEC, X, Y, Role(), seed=5)
    delta = p.make_delta(1, G0)
    sent = update()[1].decoded_weights
    assert all(np.allclose(delta[k], sent[k].astype(np.float64) - G0[k], atol=1e-6) for k in G0)
    dp = Participant(PrivateKey.from_secret(1), SPEC, X, Y, Role(dp_sigma=1.0, dp_clip=0.5), seed=5)
    noisy = dp.make_delta(1, G0)
    assert dp.accountant.rounds == 1 and not all(np.allclose(noisy[k], delta[k]) for k in G0)
    flip = Participant(PrivateKey.from_secret(1), SPEC, X, Y, Role(attack="sign-flip"), seed=5).make_delta(1, G0)
    assert sum(float(np.sum(flip[k] * delta[k])) for k in G0) < 0
