"""cinematic.data.tokenizers."""
