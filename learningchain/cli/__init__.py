"""The command line of node.py: its commands and value types, inspection of a
running node, the multi-process demo and the processes it starts."""
