"""In-process fakes of services that have no local emulator, speaking their real wire protocol."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import make_server


class WsgiServer:
    """A threaded WSGI server on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app: Any) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"wsgi-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> WsgiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
