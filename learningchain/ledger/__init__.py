"""The consensus rules, pure: update transactions, blocks and headers, header
rules and headers-first sync, genesis, round rules, the chain and its fork
choice, the mempool, compact blocks and the per-tx stamp.

Imports only learningchain.core and learningchain.learning; docs/protocol.md is
the specification."""
