"""cinematic.models."""
