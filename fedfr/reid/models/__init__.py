"""Re-ID models: backbones with a BNNeck head (ResNet-18/34/50 with last stride 1, a small CPU
model), built by name."""
