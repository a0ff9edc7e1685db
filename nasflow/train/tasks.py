"""What a network is trained to do: its loss and its metrics, so one trainer serves classification and stereo.

A task turns a model's output and a batch's targets into a loss (for backward) and into additive *tallies*
(sums over the batch, so that an epoch's metrics are exact however the data is batched); ``metrics`` turns the
summed tallies into the reported numbers. ``accuracy`` is always among them: the fraction of correctly
classified samples for classification, the one-pixel accuracy (fraction of known pixels within one pixel) for
stereo, whose ``mean_disparity_error`` is reported beside it.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch.nn import functional as F

__all__ = ["ClassificationTask", "StereoTask", "Task"]


class Task(Protocol):
    """A loss and additive tallies for one kind of target; ``names`` are the keys ``metrics`` returns."""

    names: tuple[str, ...]

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    def tally(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]: ...

    def metrics(self, sums: dict[str, float]) -> dict[str, float]: ...


class ClassificationTask:
    """Class scores ``[B, classes]`` against labels ``[B]``: ``mse`` (output rates against one-hot targets,
    AutoSNN) or ``ce`` (cross-entropy); accuracy of the arg-max."""

    names = ("accuracy",)

    def __init__(self, loss: str = "ce", num_classes: int = 10) -> None:
        if loss not in ("mse", "ce"):
            raise ValueError(f"unknown classification loss {loss!r}; known: mse, ce")
        self.kind, self.num_classes = loss, int(num_classes)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return F.mse_loss(output, F.one_hot(target, self.num_classes).to(output.dtype))
        return F.cross_entropy(output, target)

    def tally(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return {"hits": float((output.argmax(1) == target).sum()), "count": float(len(target))}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"accuracy": sums["hits"] / sums["count"] if sums.get("count") else float("nan")}


class StereoTask:
    """A cost volume ``[B, D, H, W]`` against disparities ``[B, H, W]`` (``NaN`` unknown): PDS's sub-pixel
    cross-entropy, sub-pixel MAP estimate, one-pixel accuracy and mean disparity error over known pixels
    (``nasflow.snn.stereo``); ``disparity_step`` is the model's (``SiameseStereo.disparity_step``)."""

    names = ("accuracy", "mean_disparity_error")

    def __init__(self, disparity_step: float = 1.0) -> None:
        self.disparity_step = float(disparity_step)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from nasflow.snn.stereo import subpixel_cross_entropy

        return subpixel_cross_entropy(output, target, disparity_step=self.disparity_step)

    def tally(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        from nasflow.snn.stereo import subpixel_map

        return self.tally_prediction(subpixel_map(output.detach(), disparity_step=self.disparity_step), target)

    @staticmethod
    def tally_prediction(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """The tallies of a disparity map ``[B, H, W]`` itself (a baseline that predicts without a cost volume)."""
        from nasflow.snn.stereo import disparity_errors

        errors = disparity_errors(prediction, target)
        return {"hits": float((errors <= 1.0).sum()), "count": float(errors.numel()),
                "abs_error": float(errors.double().sum())}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = sums.get("count", 0.0)
        nan = float("nan")
        return {"accuracy": sums["hits"] / n if n else nan, "mean_disparity_error": sums["abs_error"] / n if n else nan}
