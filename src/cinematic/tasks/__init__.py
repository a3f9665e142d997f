"""Training recipes, one module per model family: data, loss, samples, and the family's `FAMILY`
record (`cinematic.training.family.ModelFamily`) that `cinematic.registry` collects."""
