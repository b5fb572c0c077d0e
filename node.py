#!/usr/bin/env python3
"""LearningChain node: ``python node.py --help`` (see learningchain/cli/main.py)."""
import sys

from learningchain.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
