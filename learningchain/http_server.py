"""Serving the API with waitress: the server that :func:`learningchain.service.run_node`
(and the tests that start a real node) run :func:`learningchain.api.create_app` in.

waitress answers some refusals itself, before the app runs (a body over
``max_request_body_size``, headers too large, a malformed request line);
:class:`JsonErrorTask` gives them the API's JSON shape and counts them.
:func:`serve_until` runs the event loop until a stop event and closes every
connection from that same thread.
"""
from __future__ import annotations

import json
import threading
import time

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (body over ``max_request_body_size``, headers too
    large, a malformed request line) in our JSON shape, and counted like the
    app's. waitress answers them before the app runs, from its parser."""

    def execute(self) -> None:
        err = self.request.error
        reason = {413: "body-too-large", 431: "headers-too-large"}.get(err.code, "bad-request")
        app = self.channel.flask_app
        if err.code == 413:
            text = f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        else:
            text = f"{err.reason}: {err.body}"
        node_obj = app.config.get("NODE")
        if node_obj is not None:
            node_obj.refused[reason] += 1
        body = json.dumps({"error": text, "reason": reason}).encode()
        self.status = f"{err.code} {err.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    flask_app: Flask  # set per server by create_http_server (waitress wraps the app it holds)


def create_http_server(app: Flask, host: str, port: int, threads: int = 8):
    """A waitress server for ``app`` that refuses an oversized body from its
    Content-Length header, before reading it. Without ``max_request_body_size``
    waitress buffers up to 1 GiB per request (spilling to temp files) before
    Flask sees ``MAX_CONTENT_LENGTH``. waitress refuses ``length >= limit`` and
    werkzeug ``length > MAX_CONTENT_LENGTH``, hence the + 1: both agree on the
    largest body allowed. See https://docs.pylonsproject.org/projects/waitress/en/latest/arguments.html
    """
    server = create_server(app, host=host, port=port, threads=threads,
                           max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + 1)
    # read per accepted connection: a subclass that knows our app
    server.channel_class = type("NodeChannel", (JsonErrorChannel,), {"flask_app": app})
    return server


def serve_until(server, stop: threading.Event, tick: float = 0.2) -> None:
    """Run a waitress server's event loop until ``stop`` is set, then close it and
    every open connection from this same thread (closing sockets from another
    thread while the loop selects on them is a race)."""
    try:
        while not stop.is_set():
            server.asyncore.loop(timeout=tick, map=server._map, use_poll=server.adj.asyncore_use_poll,
                                 count=1)
    finally:
        # Let the worker threads finish their requests while the loop still
        # flushes their output; closing first makes a late worker write to a
        # closed trigger (EBADF in waitress's pull_trigger).
        dispatcher = server.task_dispatcher
        dispatcher.set_thread_count(0)
        deadline = time.monotonic() + 3.0
        while dispatcher.threads and time.monotonic() < deadline:
            server.asyncore.loop(timeout=0.05, map=server._map, use_poll=server.adj.asyncore_use_poll,
                                 count=1)
        dispatcher.shutdown(timeout=0.5)
        server.close()
        for channel in list(server._map.values()):
            try:
                channel.close()
            except OSError:
                pass
