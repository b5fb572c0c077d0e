"""LearningChain: federated learning on a proof-of-work ledger."""
