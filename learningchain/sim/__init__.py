"""Experiments on the same core, in one process: the simulator with an
in-memory transport, its configuration, sweeps, results and plots."""
