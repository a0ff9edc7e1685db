"""nasflow: search, train, export and hardware-cost spiking neural networks."""

__version__ = "0.1.0"
