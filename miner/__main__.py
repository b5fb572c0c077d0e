"""``python -m miner --node URL [--workers N] [--quiet]``: see :mod:`miner.client`."""
import sys

from miner.client import main

if __name__ == "__main__":  # guarded: spawned worker processes import this module
    sys.exit(main())
