"""The Shapes world: a tiny synthetic text-to-image world, its ground-truth colour reader and its benchmarks."""
