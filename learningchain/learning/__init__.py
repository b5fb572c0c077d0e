"""Federated learning, pure: models, aggregation rules, update compression,
differential privacy, Byzantine attacks, data sets and partitions, participant
selection, reputation and energy, and the baselines.

Imports only learningchain.core."""
