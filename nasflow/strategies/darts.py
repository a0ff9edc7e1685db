"""First-order DARTS over AutoSNN's block choices: a differentiable relaxation of the TBD positions.

The relaxed network is AutoSNN's supernet (``nasflow.train.supernet.AutoSNNSupernet``: the macro backbone with every
candidate block at every TBD position) whose positions run *all* candidates and output their mixture

    y_i = Σ_k softmax(α_i)_k · block_k(x_i)

(``MixedChoiceBlock``). Every block emits spikes, so ``y_i`` is a convex combination of spike trains: a value in
[0, 1] per neuron and step, not a spike. The next position's convolutions take it like any analog input; the
surrogate gradient flows through every candidate. Only the decoded network (one block per position) is a true SNN
and is what gets exported; the mixture exists only during the search.

Bi-level, first order (DARTS' ``ξ = 0``): per training batch, α takes one Adam step (the paper's lr 3e-4,
betas (0.5, 0.999), weight decay 1e-3) on a validation batch, then the weights take one step on the training batch.
The α loss may add a spike cost ``λ · E_α[spikes] / avg``: ``E_α[spikes]`` is the expected spike count of the
network under softmax(α), from each candidate's measured spikes (constants; the gradient reaches α through the
probabilities, as in FBNet's latency term) and ``avg`` the same count under uniform probabilities, so the term is
1 at the start and ``λ`` is comparable across datasets and widths. ``λ = 0`` (default) is plain DARTS.
Decoding takes the argmax per position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nasflow.data import make_loaders
from nasflow.data.loaders import first_samples
from nasflow.snn.activity import ActivityMonitor
from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.neurons import reset_states
from nasflow.strategies.intraining import InTrainingStrategy, SpaceLike, autosnn_space, run_in_training
from nasflow.train.supernet import AutoSNNSupernet, ChoiceBlock, path_costs
from nasflow.train.trainer import evaluate, resolve_device, spike_loss

__all__ = ["DartsAutoSNN", "DartsConfig", "MixedChoiceBlock", "RelaxedAutoSNN", "run_darts_autosnn"]

ALPHA_INIT_STD = 1e-3  # DARTS' initialisation: near-uniform, symmetry broken


class MixedChoiceBlock(ChoiceBlock):
    """A ``ChoiceBlock`` that, while ``mix`` holds per-choice weights, outputs the weighted sum of all its choices.

    With ``mix = None`` it is the supernet's single-path block (its wiring, and so its export, is the active
    choice); the mixture is a training-time forward only and has no wiring.
    """

    def __init__(self, block: ChoiceBlock) -> None:
        # Adopts ``block``'s candidates (same modules, same state_dict keys) instead of building new ones, so the
        # supernet's ``set_path`` / ``extract`` keep working on the relaxed network.
        nn.Module.__init__(self)
        self.choices = block.choices
        self.active = block.active
        self.mix: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is None:
            return super().forward(x)
        out = None
        for w, block in zip(self.mix, self.choices.values()):
            y = w * block(x)
            out = y if out is None else out + y
        return out


class RelaxedAutoSNN(nn.Module):
    """AutoSNN's supernet with mixed TBD positions and one row of architecture logits ``alpha`` per position."""

    def __init__(self, space: SpaceLike, in_shape: Sequence[int], num_classes: int, channels: int, steps: int,
                 neuron: NeuronSpec | None = None) -> None:
        super().__init__()
        self.supernet = AutoSNNSupernet(choices=space.choices, macro=space.macro, in_shape=in_shape,
                                        num_classes=num_classes, channels=channels, steps=steps, neuron=neuron)
        for i, block in enumerate(self.supernet.features):
            if isinstance(block, ChoiceBlock):
                self.supernet.features[i] = MixedChoiceBlock(block)
        self.blocks: list[MixedChoiceBlock] = [b for b in self.supernet.features if isinstance(b, MixedChoiceBlock)]
        if len(self.blocks) != space.num_blocks:
            raise ValueError(
                f"the space has {space.num_blocks} TBD blocks; macro {space.macro!r} has {len(self.blocks)}")
        self.choices = tuple(space.choices)
        self.alpha = nn.Parameter(ALPHA_INIT_STD * torch.randn(len(self.blocks), len(self.choices)))
        # Activity-monitor layer names of each candidate's neurons: (position, choice) → name prefix.
        index = {id(m): i for i, m in enumerate(self.supernet.features)}
        self.prefixes = [[f"supernet.features.{index[id(b)]}.choices.{name}." for name in self.choices]
                         for b in self.blocks]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.supernet.parameters())

    def probabilities(self) -> torch.Tensor:
        return F.softmax(self.alpha, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.probabilities()
        try:
            for block, p in zip(self.blocks, probs):
                block.mix = p
            return self.supernet(x)
        finally:
            for block in self.blocks:
                block.mix = None  # do not keep this batch's graph alive

    def candidate_spikes(self, summary: dict[str, Any]) -> tuple[torch.Tensor, float]:
        """Per (position, choice) spikes per sample from an ``ActivityMonitor`` summary, and the spikes of the
        fixed layers (stem, FC); both measured, so constants to the optimiser."""
        layers = summary["layers"]
        table = [[sum(v["spikes_per_sample"] for n, v in layers.items() if v["kind"] == "neuron" and n.startswith(p))
                  for p in row] for row in self.prefixes]
        spikes = torch.tensor(table, dtype=torch.float32, device=self.alpha.device)
        return spikes, float(summary["spikes_per_sample"]) - float(spikes.sum())


class DartsAutoSNN(InTrainingStrategy):
    """First-order DARTS over AutoSNN's TBD block choices (see the module docstring)."""

    name = "darts"

    def __init__(self, in_shape: Sequence[int], num_classes: int, channels: int = 16, steps: int = 8,
                 lr_w: float = 5e-3, lr_alpha: float = 3e-4, lam: float = 0.0, optimizer: str = "adam",
                 neuron: NeuronSpec | None = None, device: torch.device | str = "cpu") -> None:
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if not (lr_w > 0 and lr_alpha > 0 and math.isfinite(lam)):
            raise ValueError(f"need lr_w > 0, lr_alpha > 0 and a finite lam, got {lr_w}, {lr_alpha}, {lam}")
        self.in_shape, self.num_classes = tuple(int(s) for s in in_shape), int(num_classes)
        self.channels, self.steps, self.neuron = int(channels), int(steps), neuron or NeuronSpec()
        self.lr_w, self.lr_alpha, self.lam, self.optimizer = float(lr_w), float(lr_alpha), float(lam), optimizer
        self.device = torch.device(device)
        self.network: RelaxedAutoSNN | None = None
        self.updates = 0

    def settings(self) -> dict[str, Any]:
        return {"in_shape": list(self.in_shape), "num_classes": self.num_classes, "channels": self.channels,
                "steps": self.steps, "neuron": self.neuron.to_dict(), "lr_w": self.lr_w, "lr_alpha": self.lr_alpha,
                "lam": self.lam, "optimizer": self.optimizer}

    def relax(self, space: SpaceLike) -> RelaxedAutoSNN:
        self.network = RelaxedAutoSNN(space, self.in_shape, self.num_classes, self.channels, self.steps,
                                      self.neuron).to(self.device)
        w = self.network.weight_parameters()
        self.opt_w = (torch.optim.Adam(w, lr=self.lr_w) if self.optimizer == "adam"
                      else torch.optim.SGD(w, lr=self.lr_w, momentum=0.9, weight_decay=3e-4))
        self.opt_alpha = torch.optim.Adam(self.network.arch_parameters(), lr=self.lr_alpha, betas=(0.5, 0.999),
                                          weight_decay=1e-3)
        self.updates = 0
        return self.network

    def _net(self) -> RelaxedAutoSNN:
        if self.network is None:
            raise RuntimeError("call relax(space) before using the strategy")
        return self.network

    def step(self, batch_train, batch_val) -> dict[str, float]:
        net = self._net()
        net.train()
        xv, yv = (t.to(self.device) for t in batch_val)
        reset_states(net)
        with ActivityMonitor(net) as mon:
            out_v = net(xv)
        loss_v = spike_loss("mse", out_v, yv, self.num_classes)
        spikes, fixed = net.candidate_spikes(mon.summary())
        expected = (net.probabilities() * spikes).sum() + fixed
        uniform = float(spikes.mean(1).sum()) + fixed
        loss_alpha = loss_v + self.lam * expected / uniform if self.lam and uniform > 0 else loss_v
        self.opt_alpha.zero_grad(set_to_none=True)
        loss_alpha.backward(inputs=net.arch_parameters())
        self.opt_alpha.step()

        xt, yt = (t.to(self.device) for t in batch_train)
        reset_states(net)
        out_t = net(xt)
        loss_t = spike_loss("mse", out_t, yt, self.num_classes)
        if not torch.isfinite(loss_t):
            raise FloatingPointError(f"DARTS weight loss became {float(loss_t)}; lower lr_w")
        self.opt_w.zero_grad(set_to_none=True)
        loss_t.backward(inputs=net.weight_parameters())
        self.opt_w.step()
        self.updates += 1
        return {
            "train_loss": float(loss_t), "train_accuracy": float((out_t.argmax(1) == yt).float().mean()),
            "val_loss": float(loss_v), "val_accuracy": float((out_v.argmax(1) == yv).float().mean()),
            "spikes": float(expected), "mixture_spikes": float(mon.summary()["spikes_per_sample"]),
        }

    def decode(self) -> tuple[str, ...]:
        net = self._net()
        return tuple(net.choices[int(i)] for i in net.alpha.detach().argmax(1))

    def arch_weights(self) -> list[list[float]]:
        return self._net().probabilities().detach().cpu().tolist()

    def evaluate(self, loader: Iterable) -> dict[str, Any]:
        model = self._net().supernet.extract(self.decode()).to(self.device)
        ev = evaluate(model, loader, self.device)
        return {"accuracy": ev["accuracy"], "costs": path_costs(ev)}

    def state_dict(self) -> dict[str, Any]:
        net = self._net()
        return {"network": net.state_dict(), "opt_w": self.opt_w.state_dict(),
                "opt_alpha": self.opt_alpha.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._net().load_state_dict(state["network"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_alpha.load_state_dict(state["opt_alpha"])
        self.updates = int(state["updates"])


@dataclass(frozen=True)
class DartsConfig:
    """One DARTS search over AutoSNN's block space (checked on construction)."""

    macro: str = "snn1"
    channels: int = 16
    steps: int = 8
    epochs: int = 20
    batch_size: int = 32
    lr_w: float = 5e-3
    lr_alpha: float = 3e-4
    lam: float = 0.0
    seed: int = 0
    dataset: str = "digits"
    data_dir: str | None = None
    device: str = "auto"
    progress: bool = True
    optimizer: str = "adam"
    val_split: float = 0.2  # the AutoSNN search's D_train / D_val split, so both strategies see the same data
    max_samples: int | None = None  # keep the first N training (and N/4 validation) samples: quick runs, tests

    def __post_init__(self) -> None:
        checks = {
            "channels": self.channels >= 1, "steps": self.steps >= 1, "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1, "lr_w": self.lr_w > 0, "lr_alpha": self.lr_alpha > 0,
            "lam": math.isfinite(self.lam), "optimizer": self.optimizer in ("adam", "sgd"),
            "val_split": 0.0 < self.val_split < 1.0, "max_samples": self.max_samples is None or self.max_samples >= 4,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid DARTS config value(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        autosnn_space(self.macro)  # raises for an unknown macro


def darts_loaders(cfg: DartsConfig):
    """Train / val / test loaders of ``cfg`` (train and val from the seeded D_train / D_val split)."""
    loaders = make_loaders(cfg.dataset, cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed,
                           val_split=cfg.val_split)
    if loaders.spec.kind != "static":
        raise ValueError(f"dataset {cfg.dataset!r} is an event dataset; DARTS over AutoSNN runs static data here")
    if cfg.max_samples is not None:
        loaders = loaders._replace(train=first_samples(loaders.train, cfg.max_samples, True, cfg.seed),
                                   val=first_samples(loaders.val, max(cfg.max_samples // 4, 1), False, cfg.seed))
    return loaders


def run_darts_autosnn(cfg: DartsConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) a DARTS search over AutoSNN's block space; returns the content of ``search.json``."""
    loaders = darts_loaders(cfg)
    spec = loaders.spec
    strategy = DartsAutoSNN(spec.image_shape, spec.num_classes, channels=cfg.channels, steps=cfg.steps,
                            lr_w=cfg.lr_w, lr_alpha=cfg.lr_alpha, lam=cfg.lam, optimizer=cfg.optimizer,
                            device=resolve_device(cfg.device))
    return run_in_training(strategy, autosnn_space(cfg.macro), loaders, out_dir, cfg.epochs, seed=cfg.seed,
                           progress=cfg.progress, extra={"dataset": cfg.dataset, "config": asdict(cfg)})
