"""The stereo matching head: cost volume, sub-pixel MAP estimator, sub-pixel cross-entropy and disparity metrics.

SpikeDHS (§4.5) turns the spiking feature maps of the two cameras into a matching cost tensor over disparities and
reads a disparity out of it with the sub-pixel estimator and loss of Practical Deep Stereo (PDS, Tulyakov, Ivanov
and Fleuret, NeurIPS 2018). No NIR node exists for these operations, so they run on the host, in float, after the
chip; ``matching_head_ops`` counts what they cost there.

Conventions. A cost volume ``[B, D, H, W]`` holds matching scores, larger meaning a better match (PDS feeds its
"matching cost" to a softmax as logits, and so does this module); index ``k`` stands for disparity
``k · disparity_step`` pixels of the ground truth's resolution. Disparity follows rectified stereo: left pixel
``x`` matches right pixel ``x - d``. Ground truth is float ``[B, H, W]`` with ``NaN`` (or ``±inf``, PDS's marker)
where unknown; unknown pixels are left out of the loss and the metrics.

Lower resolution. Features at ``1/s`` of the input size give a cost volume whose disparity steps are ``s``
input pixels: build it with ``disparity_levels(D, s)`` levels, bring it to the input size with ``upsample_cost``
(bilinear over space, levels untouched), and pass ``disparity_step=s`` to the estimator and the loss. This is PDS's
own design (its matching runs at half disparity resolution, ``disparity_step=2``), and it keeps the loss and the
metrics in input pixels.

Defaults from PDS's released code (tlkvstepan/PracticalDeepStereo_NIPS2018, ``estimator.py``: ``SubpixelMap(
half_support_window=4)``; ``loss.py``: ``SubpixelCrossEntropy(diversity=1.0)``, also the default of the DDES event
stereo trainer): support ``δ = 4`` pixels and diversity ``b = 1`` pixel. The paper's own text was not available
to check these numbers against; the code is what the published results ran.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PDS_DIVERSITY",
    "PDS_SUPPORT",
    "SiameseStereo",
    "cost_volume",
    "disparity_errors",
    "disparity_levels",
    "disparity_metrics",
    "matching_head_ops",
    "mean_depth_error",
    "mean_disparity_error",
    "one_pixel_accuracy",
    "subpixel_cross_entropy",
    "subpixel_map",
    "upsample_cost",
]

PDS_SUPPORT = 4.0
"""Half-width ``δ`` (pixels of disparity) of the estimator's window around the best match (PDS code default)."""
PDS_DIVERSITY = 1.0
"""Diversity ``b`` (pixels) of the Laplace target of the sub-pixel cross-entropy (PDS code default)."""


def cost_volume(left: torch.Tensor, right: torch.Tensor, disparities: int) -> torch.Tensor:
    """Correlation cost volume ``[B, D, h, w]`` of two feature maps ``[B, C, h, w]``.

    ``cost[b, d, y, x] = mean_c left[b, c, y, x] · right[b, c, y, x - d]``, and 0 where ``x - d < 0`` (no right
    pixel). Features may be spike rates or counts over T. Correlation needs no weights, so the search spends its
    capacity on the feature network, and it is the matching score of DispNet-C-style heads.
    """
    if left.dim() != 4 or left.shape != right.shape:
        raise ValueError(f"cost_volume needs two feature maps [B, C, h, w] of one shape, got {tuple(left.shape)} "
                         f"and {tuple(right.shape)}")
    if disparities < 1:
        raise ValueError(f"cost_volume needs at least one disparity level, got {disparities}")
    width = left.shape[-1]
    levels = []
    for d in range(disparities):
        if d >= width:
            levels.append(left.new_zeros(left.shape[0], *left.shape[2:]))
        else:
            product = (left[..., d:] * right[..., : width - d]).mean(dim=1)
            levels.append(F.pad(product, (d, 0)))
    return torch.stack(levels, dim=1)


def disparity_levels(disparities: int, factor: int) -> int:
    """Levels a cost volume at ``1/factor`` resolution needs to cover disparities ``0 .. disparities - 1``:
    ``ceil((D - 1) / factor) + 1`` (e.g. 8 input-pixel levels at half resolution: 0, 2, 4, 6, 8 → 5)."""
    if disparities < 1 or factor < 1:
        raise ValueError(f"disparities and factor must be positive, got {disparities} and {factor}")
    return math.ceil((disparities - 1) / factor) + 1


def upsample_cost(cost: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear up-sampling of a cost volume ``[B, D, h, w]`` to ``[B, D, H, W]`` (``align_corners=False``).

    Only space is resampled: level ``k`` still means disparity ``k · disparity_step`` (see the module docstring).
    """
    if cost.dim() != 4:
        raise ValueError(f"upsample_cost needs a cost volume [B, D, h, w], got shape {tuple(cost.shape)}")
    if tuple(cost.shape[-2:]) == tuple(size):
        return cost
    return F.interpolate(cost, size=tuple(size), mode="bilinear", align_corners=False)


def _disparity_values(cost: torch.Tensor, disparity_step: float) -> torch.Tensor:
    if cost.dim() != 4:
        raise ValueError(f"expected a cost volume [B, D, H, W], got shape {tuple(cost.shape)}")
    if disparity_step <= 0:
        raise ValueError(f"disparity_step must be positive, got {disparity_step}")
    return torch.arange(cost.shape[1], device=cost.device, dtype=cost.dtype).view(1, -1, 1, 1) * disparity_step


def subpixel_map(cost: torch.Tensor, support: float = PDS_SUPPORT, disparity_step: float = 1.0) -> torch.Tensor:
    """PDS's sub-pixel MAP estimator: ``[B, D, H, W]`` → disparity ``[B, H, W]``.

    ``d̂ = Σ_{d: |d - d*| ≤ δ} d · softmax(c)_d / Σ_{same d} softmax(c)_d`` with ``d*`` the best-scoring disparity
    and ``δ = support`` in disparity pixels: the mean of the score distribution restricted to a window around its
    mode. Unlike the full soft-argmin it ignores a distant second mode, so an ambiguous match does not land
    between two surfaces (PDS §3.3; ``SubpixelMap`` in its code). Renormalising ``softmax`` over the window equals
    a softmax of the window's scores, which is how it is computed.
    """
    values = _disparity_values(cost, disparity_step)
    best = cost.argmax(dim=1, keepdim=True)
    index = torch.arange(cost.shape[1], device=cost.device).view(1, -1, 1, 1)
    inside = (index - best).abs().to(cost.dtype) * disparity_step <= support + 1e-6
    weights = torch.softmax(cost.masked_fill(~inside, float("-inf")), dim=1)
    return (weights * values).sum(dim=1)


def subpixel_cross_entropy(
    cost: torch.Tensor, target: torch.Tensor, diversity: float = PDS_DIVERSITY, disparity_step: float = 1.0
) -> torch.Tensor:
    """PDS's sub-pixel cross-entropy, averaged over the pixels with known disparity.

    ``L = -Σ_d log softmax(c)_d · N(d; d_gt, b)`` with ``N(d) = exp(-|d - d_gt| / b) / Σ_d' exp(-|d' - d_gt| / b)``
    the Laplace distribution centred on the sub-pixel ground truth, discretised on the volume's disparities and
    normalised over them (``loss.py`` of the PDS code divides by the same sum). A sub-pixel target spreads its
    mass over the neighbouring levels, so the estimator can learn fractions of a pixel. Returns 0 (still attached
    to ``cost``) when no pixel is known.
    """
    if target.dim() != 3 or target.shape[0] != cost.shape[0] or target.shape[-2:] != cost.shape[-2:]:
        raise ValueError(f"target {tuple(target.shape)} must be [B, H, W] matching the cost volume "
                         f"{tuple(cost.shape)}; up-sample the cost volume first (upsample_cost)")
    if diversity <= 0:
        raise ValueError(f"diversity must be positive, got {diversity}")
    values = _disparity_values(cost, disparity_step)
    known = torch.isfinite(target)
    truth = torch.where(known, target, torch.zeros_like(target)).unsqueeze(1).to(cost.dtype)
    laplace = torch.softmax(-(values - truth).abs() / diversity, dim=1)  # exp(-|d - d_gt| / b), normalised over d
    per_pixel = -(laplace * F.log_softmax(cost, dim=1)).sum(dim=1)
    if not bool(known.any()):
        return cost.sum() * 0.0
    return per_pixel[known].mean()


def disparity_errors(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``|prediction - target|`` at the pixels with known disparity (a flat tensor): what every metric averages."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    known = torch.isfinite(target)
    return (prediction.detach()[known] - target[known]).abs()


def mean_disparity_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute disparity error over the pixels with known disparity (``NaN`` when there are none)."""
    errors = disparity_errors(prediction, target)
    return errors.mean() if errors.numel() else torch.tensor(float("nan"))


def one_pixel_accuracy(prediction: torch.Tensor, target: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Fraction of known pixels whose disparity error is at most ``threshold`` pixels (1PA; PDS's n-pixel error
    counts ``|error| > n`` as wrong, so ``|error| = 1`` is right). ``NaN`` when no pixel is known."""
    errors = disparity_errors(prediction, target)
    return (errors <= threshold).float().mean() if errors.numel() else torch.tensor(float("nan"))


def mean_depth_error(prediction: torch.Tensor, target: torch.Tensor, focal_baseline: float) -> torch.Tensor:
    """Mean absolute depth error (the unit of ``focal_baseline`` / pixel, e.g. metres for MVSEC's 19.94 px·m).

    Depth is ``focal_baseline / (disparity + 1e-7)`` as in DDES, over pixels with known, positive disparity.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    known = torch.isfinite(target) & (target > 0)
    if not bool(known.any()):
        return torch.tensor(float("nan"))
    depth = focal_baseline / (prediction.detach()[known] + 1e-7)
    return (depth - focal_baseline / (target[known] + 1e-7)).abs().mean()


def disparity_metrics(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """``mean_disparity_error``, ``one_pixel_accuracy`` and ``known_pixels`` of a batch; weight batch means by
    ``known_pixels`` to average over a data set."""
    return {
        "mean_disparity_error": float(mean_disparity_error(prediction, target)),
        "one_pixel_accuracy": float(one_pixel_accuracy(prediction, target)),
        "known_pixels": int(torch.isfinite(target).sum()),
    }


def matching_head_ops(
    channels: int,
    feature_size: tuple[int, int],
    levels: int,
    output_size: tuple[int, int] | None = None,
    support: float = PDS_SUPPORT,
    disparity_step: float = 1.0,
) -> dict[str, int]:
    """Host operations of one sample through this module's head (the part no chip runs).

    Counts what the code above does: the cost volume's multiply-accumulates (``C`` per level and feature pixel
    with a right match), bilinear up-sampling (4 per output value, when ``output_size`` differs), and the
    estimator's comparisons (argmax over ``levels``), exponentials and multiply-accumulates (one each per window
    level and output pixel; the window is ``2·floor(δ / step) + 1`` levels, at most ``levels``, counted in full at
    the border as an upper bound).
    """
    h, w = feature_size
    out_h, out_w = output_size if output_size is not None else feature_size
    window = min(levels, 2 * int(math.floor(support / disparity_step + 1e-6)) + 1)
    pixels = out_h * out_w
    return {
        "cost_volume_macs": channels * h * sum(max(w - d, 0) for d in range(levels)),
        "upsample_macs": 0 if (out_h, out_w) == (h, w) else 4 * levels * pixels,
        "estimator_comparisons": (levels - 1) * pixels,
        "estimator_exps": window * pixels,
        "estimator_macs": window * pixels,
    }


class SiameseStereo(nn.Module):
    """Siamese stereo on a feature network: both cameras' events ``[B, T, 4, H, W]`` (left ON/OFF, right ON/OFF)
    go through ``features`` as one batch, their spike rates over T are correlated into a cost volume at the
    features' resolution (``nasflow.snn.stereo.cost_volume``), scaled by a learnt temperature, and up-sampled to
    ``H x W``. The output is the cost volume whose level ``k`` means disparity ``k · disparity_step`` input
    pixels (``disparity_step`` = the features' down-sampling), what PDS's estimator and loss read. ``upsample``
    brings features from a coarser level to ``feature_hw`` by nearest up-sampling first (on the host).

    Only ``features`` runs on a chip: ``chip_network()`` is what export and the hardware models see, and
    ``host_ops()`` counts the rest per sample (``matching_head_ops``)."""

    def __init__(self, features: nn.Module, in_hw: tuple[int, int], feature_hw: tuple[int, int],
                 disparities: int, upsample: int = 1) -> None:
        super().__init__()
        if in_hw[0] % feature_hw[0] or in_hw[1] % feature_hw[1]:
            raise ValueError(f"features at {feature_hw} do not divide the input {in_hw}")
        self.features, self.in_hw, self.upsample = features, (int(in_hw[0]), int(in_hw[1])), int(upsample)
        self.disparity_step = self.in_hw[1] // int(feature_hw[1])
        self.levels = disparity_levels(int(disparities), self.disparity_step)
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != 4:
            raise ValueError(f"stereo input must be [B, T, 4, H, W] (left ON/OFF, right ON/OFF), got {tuple(x.shape)}")
        return self.match(self.features(self.camera_streams(x)))

    @staticmethod
    def camera_streams(x: torch.Tensor) -> torch.Tensor:
        """``[B, T, 4, H, W]`` stereo events as the chip's input: ``[T, 2B, 2, H, W]``, the left camera's ``B``
        streams, then the right camera's."""
        seq = x.transpose(0, 1)
        return torch.cat([seq[:, :, :2], seq[:, :, 2:]], dim=1)

    def match(self, spikes: torch.Tensor) -> torch.Tensor:
        """The host part: feature spikes ``[T, 2B, C, h, w]`` (``camera_streams`` order, from torch or from a
        chip) to the cost volume ``[B, levels, H, W]``."""
        rates = spikes.mean(0)
        if self.upsample > 1:  # features computed at a coarser level (``TrellisPathNet``)
            rates = F.interpolate(rates, scale_factor=self.upsample, mode="nearest")
        b = rates.shape[0] // 2
        cost = cost_volume(rates[:b], rates[b:], self.levels) * self.scale
        return upsample_cost(cost, self.in_hw)

    def chip_network(self) -> nn.Module:
        """The part with a NIR form (the spiking features of one camera); the rest runs on the host."""
        return self.features

    def host_ops(self) -> dict[str, int]:
        """Host operations per stereo sample after the chip: nearest up-sampling of both cameras' rates (one copy
        per output value), the cost volume, its up-sampling and the estimator (``matching_head_ops``)."""
        h, w = self.in_hw
        fh, fw = h // self.disparity_step, w // self.disparity_step
        channels = int(self.features.features)  # type: ignore[arg-type]  # the feature network's output channels
        ops = matching_head_ops(channels, (fh, fw), self.levels, self.in_hw, disparity_step=self.disparity_step)
        ops["feature_upsample_copies"] = 0 if self.upsample == 1 else 2 * channels * fh * fw
        return ops
