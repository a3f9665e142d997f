"""cinematic.data."""
