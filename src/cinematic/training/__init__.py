"""cinematic.training."""
