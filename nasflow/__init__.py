"""nasflow: search, train, export and hardware-cost spiking neural networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nasflow")  # the installed distribution's version (pyproject.toml)
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.1.0"
