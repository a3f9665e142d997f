"""A character bigram language model as a cinematic model family (the docs/extending.md example)."""
