"""The base of everything: canonical encoding, keys and signatures, error types.

Pure: no I/O, and it imports nothing else of learningchain."""
