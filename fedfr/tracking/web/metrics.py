"""Prometheus exposition of a :class:`~fedfr.tracking.web.state.LiveView` (prometheus-client).

Per camera (label ``camera``): ``fedfr_track_frames_total``, ``fedfr_track_fps`` (frames in
the last 2 s of writing), ``fedfr_track_latency_seconds`` (histogram, capture -> written),
``fedfr_track_frames_read_total``, ``fedfr_track_dropped_frames_total`` (real-time mode),
``fedfr_track_queue_depth``, ``fedfr_track_tracks`` (confirmed tracks in view); and
``fedfr_track_identities``, ``fedfr_track_gallery_matches_total``, ``fedfr_track_running``.
"""

from __future__ import annotations

from fedfr.tracking.web.state import LiveView


class LiveViewCollector:
    """A custom collector: reads the view's counters at scrape time (no copies kept)."""

    def __init__(self, view: LiveView):
        self.view = view

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self.view.status()
        per_camera = (
            ("frames", CounterMetricFamily, "fedfr_track_frames",
             "frames processed and written"),
            ("fps", GaugeMetricFamily, "fedfr_track_fps",
             "frames written per second over the last 2 s"),
            ("read", CounterMetricFamily, "fedfr_track_frames_read",
             "frames delivered by the camera's reader"),
            ("dropped", CounterMetricFamily, "fedfr_track_dropped_frames",
             "frames dropped by the full queue (real-time mode)"),
            ("queue_depth", GaugeMetricFamily, "fedfr_track_queue_depth",
             "frames waiting in the camera's queue"),
            ("tracks", GaugeMetricFamily, "fedfr_track_tracks",
             "confirmed tracks on the newest frame"),
        )
        for key, kind, name, doc in per_camera:
            fam = kind(name, doc, labels=["camera"])
            for cam, st in status["cameras"].items():
                fam.add_metric([cam], float(st[key]))
            yield fam
        yield GaugeMetricFamily("fedfr_track_identities", "global identities held by the view",
                                value=status["identities"])
        yield CounterMetricFamily("fedfr_track_gallery_matches",
                                  "cross-camera links made by the gallery",
                                  value=status["gallery_matches"])
        yield GaugeMetricFamily("fedfr_track_running", "1 while the pipeline runs",
                                value=1.0 if status["running"] else 0.0)


def exposition(view: LiveView) -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text format for ``view``."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveViewCollector(view))
    body = generate_latest(registry) + generate_latest(view.registry)
    return body, CONTENT_TYPE_LATEST
