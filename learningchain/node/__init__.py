"""The node: the shells around the pure core. The SQLite store and the ledger
on it (chainstate), the node service, what it takes in (intake), its threads,
its status and the process that serves it (run), the participant role and its
release journal; peer-to-peer networking in node.p2p and the
HTTP API, explorer and server in node.web."""
