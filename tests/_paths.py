"""Where the tests find the repository's vendored reference data (one definition for every test module)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT / "examples" / "interop"
