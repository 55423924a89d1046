"""The live web view of ``fedfr track --serve`` (FastAPI + uvicorn): MJPEG per annotated
camera, a WebSocket of track and gallery events, a gallery page, REST status and Prometheus
``/metrics``. See docs/tracking.md, section "Web view"."""

from fedfr.tracking.web.state import LiveView

__all__ = ["LiveView", "create_app", "WebServer"]


def __getattr__(name: str):  # FastAPI / uvicorn are imported only when the server is used
    if name == "create_app":
        from fedfr.tracking.web.app import create_app

        return create_app
    if name == "WebServer":
        from fedfr.tracking.web.server import WebServer

        return WebServer
    raise AttributeError(name)
