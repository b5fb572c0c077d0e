"""Exception types. Every error carries a reason a user or peer can act on.

Validation failures carry a short machine-readable ``code`` (kebab-case, in the
spirit of Bitcoin Core's reject reasons such as ``bad-txns-inputs-missing``)
and a human ``detail``. The shells map them: HTTP 400 ``{"error": detail,
"reason": code}``, CLI one line on stderr and exit status 1 (2 for a
:class:`ConfigError`, a usage error: learningchain/cli/main.py).
"""
from __future__ import annotations


class LearningChainError(Exception):
    """Base of every error this package raises on purpose."""


class EncodingError(LearningChainError):
    """A document or array is not in its canonical form."""


class KeyFileError(LearningChainError):
    """A key file is missing, corrupt or readable by others."""


class ConfigError(LearningChainError):
    """A configuration (genesis, model spec, aggregation parameters) is unusable."""


class ValidationError(LearningChainError):
    """A transaction or block broke a rule. ``code`` names the rule."""

    def __init__(self, code: str, detail: str = ""):
        self.code = code
        self.detail = detail or code
        super().__init__(f"{code}: {detail}" if detail else code)


# Transaction reject reasons (docs/protocol.md, "Transaction validation").
TX_MALFORMED = "tx-malformed"
TX_BAD_SIGNATURE = "tx-bad-signature"
TX_MALFORMED_KEY = "tx-malformed-key"
TX_UNKNOWN_SENDER = "tx-unknown-sender"
TX_SHAPE_MISMATCH = "tx-shape-mismatch"
TX_DTYPE_MISMATCH = "tx-dtype-mismatch"
TX_NON_FINITE = "tx-non-finite"
TX_TOO_LARGE = "tx-too-large"
TX_DUPLICATE_SENDER = "tx-duplicate-sender-round"
TX_ROUND_NOT_OPEN = "tx-round-not-open"
TX_LATE = "tx-late"
TX_WRONG_BASE = "tx-wrong-base-model"
TX_DUPLICATE = "tx-duplicate"
TX_BAD_SAMPLES = "tx-bad-sample-count"
TX_NOT_SELECTED = "tx-sender-not-selected"
TX_INSUFFICIENT_STAMP = "tx-insufficient-stamp"  # id above the genesis stamp target (protocol.md §6)

# Secure aggregation reject reasons (docs/protocol.md section 14).
#: a plain update or skip on a network whose genesis asks for secure aggregation.
SA_PLAIN_TX = "sa-plain-tx"
#: a secure-aggregation tx from a sender outside the round's roster R_r.
SA_NOT_IN_ROSTER = "sa-not-in-roster"
#: the tx's phase (setup, input, unmask) of the round is over.
SA_PHASE_CLOSED = "sa-phase-closed"
#: the tx's phase has not begun (a node holds such a tx as early and offers it again).
SA_PHASE_NOT_OPEN = "sa-phase-not-open"
#: an input or unmask from a sender without a setup in the round, or a complaint
#: against a member without one.
SA_NO_SETUP = "sa-no-setup"
#: a list of the wrong length, a ciphertext of the wrong size, D_0 != mask_key,
#: unsorted or repeated complaints, a seed from a sender outside C.
SA_MALFORMED = "sa-malformed"
#: a point that is not a compressed point of secp256k1 (or a scalar out of range).
SA_BAD_POINT = "sa-bad-point"
#: a complaint whose DLEQ proof does not verify, or a setup whose proof of knowledge
#: of m (mask_key) or e (enc_key) does not.
SA_BAD_PROOF = "sa-bad-proof"
#: a complaint whose ciphertext decrypts to shares that pass Feldman's check.
SA_FALSE_COMPLAINT = "sa-false-complaint"
#: a revealed self or mask share that fails Feldman's check against its dealer's commitments.
SA_BAD_SHARE = "sa-bad-share"
#: a revealed pairwise seed point whose DLEQ proof does not verify.
SA_BAD_SEED = "sa-bad-seed"
#: a tx bound to another context: a setup whose roster digest is not R_r's (sealed for
#: another roster), an input masked for another setup set, an unmask for another input set.
SA_WRONG_CONTEXT = "sa-wrong-context"

# Block reject reasons.
BLOCK_MALFORMED = "block-malformed"
BLOCK_BAD_POW = "block-insufficient-work"
BLOCK_BAD_TARGET = "block-wrong-target"
BLOCK_BAD_PREV = "block-unknown-parent"
BLOCK_BAD_HEIGHT = "block-wrong-height"
BLOCK_BAD_MERKLE = "block-bad-merkle-root"
BLOCK_BAD_COMMITMENT_HASH = "block-bad-commitment-hash"
BLOCK_TIME_TOO_OLD = "block-time-too-old"
BLOCK_TIME_TOO_NEW = "block-time-too-new"
BLOCK_BAD_TX = "block-bad-tx"
BLOCK_DUPLICATE_TX = "block-duplicate-tx"
BLOCK_TOO_LARGE = "block-too-large"
BLOCK_BAD_COMMITMENT = "block-bad-commitment"
BLOCK_MISSING_COMMITMENT = "block-missing-commitment"
BLOCK_UNEXPECTED_COMMITMENT = "block-unexpected-commitment"
BLOCK_BAD_GENESIS = "block-bad-genesis"
BLOCK_BAD_MINER_KEY = "block-bad-miner-key"

# Mempool refusals (not consensus rules: a full or busy node may refuse a valid tx).
MEMPOOL_FULL = "mempool-full"
#: a tx already confirmed in the main chain: a replay of an old update (chainstate.py).
TX_REPLAY = "tx-replay"

# Relay refusals (local policy, not consensus: a block refused here may still be
# valid and arrive later by sync; docs/api.md, "Gossip and sync").
#: a compact block whose missing txs we will not fetch from its sender (compact.py).
COMPACT_UNKNOWN_PEER = "compact-unknown-peer"
#: an orphan's or a compact block's header target is easier than our chain could
#: require within one retarget (compact.py, plausible_target_limit).
BLOCK_TARGET_TOO_EASY = "block-target-too-easy"
#: a block that would be stored off the main chain, unrequested, on a branch whose
#: cumulative work is further below our tip's than the margin allows (side_branches.py,
#: side-branch admission; docs/protocol.md section 8). Not invalid: if its branch
#: becomes heavier, headers-first sync fetches it.
BLOCK_SIDE_WORK_TOO_LOW = "block-side-work-too-low"
#: a compact block naming more tx ids than a block of max_block_bytes can hold (compact.py).
COMPACT_TOO_MANY_TXIDS = "compact-too-many-txids"
#: a peer's header chain grew past the per-sync bound without more work than our tip (headers.py).
SYNC_TOO_MANY_HEADERS = "sync-too-many-headers"

# Local refusals of a node that cannot do its part (not consensus: the block may be valid).
#: the block store could not be written (disk full, I/O error): the block was not
#: added in memory either and is not relayed; it can come back by sync (chainstate.py).
STORE_WRITE_FAILED = "store-write-failed"
#: peer-table refusals (peer_urls.py, peer_table.py): a URL with a path (peers are hosts), too
#: many learned peers on one host or subnet, a full table, a failed or busy handshake.
PEER_URL_PATH = "peer-url-path"
PEER_HOST_FULL = "peer-host-full"
PEER_SUBNET_FULL = "peer-subnet-full"
PEER_TABLE_FULL = "peer-table-full"
PEER_HANDSHAKE_FAILED = "peer-handshake-failed"
PEER_HANDSHAKE_BUSY = "peer-handshake-busy"

# API access refusals (HTTP 403).
#: /mining/* without this node's miner token (mining_auth.py).
MINING_FORBIDDEN = "mining-forbidden"
#: /mining/wait while MAX_MINING_WAITS long-polls run already (HTTP 429).
MINING_BUSY = "mining-busy"
