"""Serving the web view with uvicorn in a background thread (the pipeline keeps the main one)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

from fedfr.errors import ConfigError

log = logging.getLogger("fedfr.track.web")


class WebServer:
    """uvicorn serving ``app`` on ``host:port`` (``port=0``: a free port, see ``url``) in a
    daemon thread. The socket is bound here, so an address in use fails at once with a
    one-line error. Use as a context manager or call ``start`` / ``stop``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000):
        self.app, self.host = app, host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ConfigError(f"web view: cannot bind {host}:{port} ({exc.strerror})") from None
        self.port = self.sock.getsockname()[1]
        self.server = None
        self.thread: threading.Thread | None = None
        if not _loopback(host):
            log.warning("web view on %s:%d is reachable from other machines: it shows camera "
                        "frames and crops of people, with no authentication", host, self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> WebServer:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, ws="websockets-sansio"
                                if _has_sansio() else "auto", lifespan="off")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # the main thread keeps its own
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name="web-view")
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"web view: uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        stopping = getattr(getattr(self.app, "state", None), "stopping", None)
        if stopping is not None:
            stopping.set()
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _has_sansio() -> bool:
    try:
        from uvicorn.protocols.websockets import websockets_sansio_impl  # noqa: F401
    except ImportError:
        return False
    return True
