"""Datasets: the offline digits default and real loaders from --data-dir."""
