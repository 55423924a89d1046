"""Video person re-ID tools over tracklet folders (re-Detect and Link, ...)."""
