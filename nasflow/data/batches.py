"""A dataset split as time-first arrays ``[T, B, *input_shape]`` (direct coding for static images), the form every
backend simulates: what the main job feeds Lava and the emulator, and what quantisation-aware fine-tuning trains
on."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["split_batches", "test_inputs"]


def split_batches(dataset: str, data_dir: str | None, seed: int, steps: int, batch: int, limit: int | None = None,
                 split: str = "test") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A split as ``([T, B, *input_shape] float32, labels)`` batches: static images repeated over the ``steps`` time
    steps (direct coding), event samples on their own time axis; at most ``limit`` samples. ``test`` in order;
    ``train`` the whole training split and ``dtrain``/``dval`` its seeded, stratified 8:2 parts (as the searches
    split it), shuffled by ``seed`` where they train, never augmented."""
    from nasflow.data.loaders import make_loaders

    if split not in ("test", "train", "dtrain", "dval"):
        raise ValueError(f"unknown split {split!r}; known: test, train, dtrain, dval")
    val_split = 0.2 if split in ("dtrain", "dval") else None
    loaders = make_loaders(dataset, batch, data_dir=data_dir, seed=seed, augment=False, val_split=val_split)
    source = {"test": loaders.test, "train": loaders.train, "dtrain": loaders.train, "dval": loaders.val}[split]
    taken = 0
    for x, y in source:
        if limit is not None:
            x, y = x[:limit - taken], y[:limit - taken]
        if loaders.spec.kind == "event":
            seq = x.transpose(0, 1)  # [B, T, ...] -> [T, B, ...]
        else:
            seq = x.unsqueeze(0).expand(steps, *x.shape)
        yield seq.contiguous().numpy().astype(np.float32), y.numpy()
        taken += len(y)
        if limit is not None and taken >= limit:
            return


def test_inputs(dataset: str, data_dir: str | None, seed: int, steps: int, samples: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` test samples as one ``[T, B, *input_shape]`` float32 array and their labels."""
    parts = list(split_batches(dataset, data_dir, seed, steps, samples, samples))
    return np.concatenate([x for x, _ in parts], axis=1), np.concatenate([y for _, y in parts])
