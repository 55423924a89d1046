"""Online multi-camera tracking (dissertation Ch. 8): frame sources, detectors, the BYTE
single-camera tracker with its Kalman filter, result writers and MOT evaluation.

Optional packages (extra ``tracking``: ``av``, ``motmetrics``; extra ``export``:
``onnxruntime``) are imported lazily by the modules that need them.
"""
