"""Online multi-camera tracking (dissertation Ch. 8)."""
