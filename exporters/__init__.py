"""Exporters: torch ⇄ NIR ⇄ Lava / lava-dl netx (uses nasflow.snn, never nasflow search code)."""
