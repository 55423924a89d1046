"""Re-ID evaluation: CMC / mAP / mINP ranking metrics, k-reciprocal re-ranking and the
single-gallery-shot protocol."""
