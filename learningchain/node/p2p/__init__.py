"""Talking to peers: the peer table and handshakes, gossip and sync, the HTTP
client with its caps, gzip on the wire."""
