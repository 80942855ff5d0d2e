"""An HTTP server on a background thread: the lifecycle shared by the local endpoint, the local API and test fakes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog: socketserver's default of 5 resets connections in a burst


class BackgroundHTTPServer:
    """Serves `handler` on host:port (0 = a free port) until `.close()`; `.url` is its base URL.

    Keyword `attributes` are set on the server object, where handlers read them as `self.server.<name>`.
    """

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0, name: str = "local-http", **attributes: Any
    ):
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        for key, value in attributes.items():
            setattr(self._server, key, value)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BackgroundHTTPServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
