"""Serving the node over HTTP: the Flask API, the HTML explorer, and the
waitress server with its connection guard."""
