"""Re-ID data: records, dataset readers (a registry by name), the synthetic pedestrian
generator, image loading, transforms and samplers."""
