"""Hardware models: map a NIR graph onto a chip and cost it (depends on numpy and nir only)."""
