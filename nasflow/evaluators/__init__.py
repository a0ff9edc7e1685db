"""Evaluators: score architectures (accuracy, costs) and turn scores into fitness."""
