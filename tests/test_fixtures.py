"""The vendored interop fixtures are the published reference data, byte for byte, and the repository reads
nothing from outside itself."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest
from _paths import INTEROP, ROOT


def _manifest() -> dict[str, str]:
    rows = [line.split() for line in (INTEROP / "SHA256SUMS").read_text().splitlines() if line.strip()]
    return {name: digest for digest, name in rows}


def test_manifest_lists_every_fixture_and_every_hash_matches() -> None:
    manifest = _manifest()
    on_disk = {p.name for p in INTEROP.iterdir() if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert set(manifest) == on_disk, "SHA256SUMS and the folder disagree: a fixture was added or removed"
    for name, digest in manifest.items():
        assert hashlib.sha256((INTEROP / name).read_bytes()).hexdigest() == digest, f"{name} was modified"


@pytest.mark.parametrize(("name", "published"), [
    ("lava_accuracy.npy", 0.9815), ("norse_accuracy.npy", 0.9811), ("snntorch_accuracy.npy", 0.9785),
    ("lava_accuracy_noDelay_bias_zero.npy", 0.486),
])
def test_published_accuracies_are_the_papers(name: str, published: float) -> None:
    assert float(np.load(INTEROP / name)) == pytest.approx(published, abs=5e-4)


def test_braille_lava_activity_is_hidden_neurons_by_steps_of_spikes() -> None:
    act = np.load(INTEROP / "lava_activity_noDelay_bias_zero.npy")
    assert act.shape == (38, 256) and set(np.unique(act)) <= {0.0, 1.0} and act.sum() > 0


def test_nothing_in_the_repository_reads_outside_it() -> None:
    """A user's clone has nothing beside it (no shared material folder): every path points inside the repository."""
    files = subprocess.run(["git", "ls-files", "*.py", "Makefile", "*.toml", "*.md", "*.yaml"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    outside = "shared"
    patterns = (f"../{outside}", f'"{outside}" / "interop"')
    offenders = [f for f in files if f != "tests/test_fixtures.py"
                 and any(p in (ROOT / f).read_text(errors="replace") for p in patterns)]
    assert not offenders, f"these files read the folder beside the repository, which a clone lacks: {offenders}"
