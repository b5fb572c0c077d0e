"""The node: the shells around the pure core. The SQLite store and the ledger
on it (chainstate), the node service and its threads, its status, the
participant role and its release journal, the miner token; peer-to-peer
networking in node.p2p and the HTTP API, explorer and server in node.web."""
