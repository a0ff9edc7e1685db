"""AutoSNN's weight-sharing super-network with single-path uniform sampling (REFERENCE.md §2).

Every TBD position holds one instance of each candidate block (``ChoiceBlock``); a path
(architecture) activates one per position. The supernet is not the search space: it is the
training-time container whose weights candidates inherit (``extract``) for evaluation or as a
warm start.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from nasflow.models import AutoSNNNet
from nasflow.snn.blocks import NeuronSpec, make_block
from nasflow.snn.wiring import Wired, Wiring
from nasflow.spaces.autosnn import BLOCK_CHOICES, NUM_TBD, num_blocks, parse_arch
from nasflow.train.checkpoint import save_checkpoint
from nasflow.train.trainer import loader_generators

__all__ = ["AutoSNNSupernet", "ChoiceBlock", "sample_path"]


class ChoiceBlock(Wired):
    """All candidate blocks of one TBD position; ``active`` selects the one that runs (and is exported)."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronSpec, choices: Sequence[str], stride: int = 1) -> None:
        super().__init__()
        self.choices = nn.ModuleDict({name: make_block(name, c_in, c_out, neuron, stride) for name in choices})
        self.active: str = next(iter(self.choices))

    def wiring(self) -> Wiring:
        return Wiring.chain(f"choices.{self.active}")


def sample_path(rng: random.Random, choices: Sequence[str] = BLOCK_CHOICES, num_blocks: int = NUM_TBD):
    """One uniformly sampled architecture (the paper draws the base-5 digits of a random integer)."""
    return tuple(rng.choice(list(choices)) for _ in range(num_blocks))


class AutoSNNSupernet(AutoSNNNet):
    """SNN_1 backbone whose five TBD positions each hold every candidate block."""

    def __init__(self, choices: Sequence[str] = BLOCK_CHOICES, macro: str = "snn1", **kwargs) -> None:
        self.choice_names = tuple(choices)
        kwargs.pop("arch", None)
        super().__init__(
            arch=(self.choice_names[0],) * num_blocks(macro),
            macro=macro,
            block_factory=lambda _name, c_in, c_out, neuron, stride=1: ChoiceBlock(
                c_in, c_out, neuron, self.choice_names, stride
            ),
            **kwargs,
        )
        self.config["supernet_choices"] = list(self.choice_names)

    @property
    def choice_blocks(self) -> list[ChoiceBlock]:
        return [m for m in self.features if isinstance(m, ChoiceBlock)]

    def set_path(self, arch: Sequence[str] | str) -> tuple[str, ...]:
        """Activate one architecture (validated against the search space)."""
        arch = parse_arch(
            arch if isinstance(arch, str) else tuple(arch), num_blocks=len(self.choice_blocks),
            choices=self.choice_names,
        )
        for block, name in zip(self.choice_blocks, arch):
            block.active = name
        self.arch = arch
        return arch

    def extract(self, arch: Sequence[str] | str) -> AutoSNNNet:
        """A standalone ``AutoSNNNet`` for ``arch`` carrying the supernet's shared weights."""
        arch = self.set_path(arch)
        cfg = {k: v for k, v in self.config.items() if k not in ("arch", "supernet_choices", "neuron")}
        net = AutoSNNNet(arch=arch, neuron=NeuronSpec.from_dict(self.config["neuron"]), **cfg)
        state = {}
        for i, block in enumerate(self.features):
            prefix = f"features.{i}."
            source = block.choices[block.active] if isinstance(block, ChoiceBlock) else block
            for k, v in source.state_dict().items():
                state[prefix + k] = v
        for k, v in self.state_dict().items():
            if not k.startswith("features."):
                state[k] = v
        net.load_state_dict(state)
        return net


def train_supernet(
    supernet: AutoSNNSupernet,
    loader,
    epochs: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    num_classes: int = 10,
    progress: bool = True,
    on_epoch=None,
    schedule: str = "none",
    checkpoint: Path | None = None,
    checkpoint_meta: dict | None = None,
    resume_state: dict | None = None,
) -> dict[str, float]:
    """Single-path uniform sampling: one random path per mini-batch, Adam (the paper's settings).

    Returns the mean of every recorded cost over the sampled paths (``spikes``, ``synops``,
    ``macs``, ``neuron_updates`` per sample): the ``cost_avg`` of the fitness. With ``checkpoint``
    the progress (weights, optimiser, schedule, cost totals and every random generator) is saved
    after each epoch with ``checkpoint_meta``; passing that saved dict back as ``resume_state``
    continues exactly where it stopped.
    """
    from tqdm.auto import tqdm

    from nasflow.snn.activity import ActivityMonitor
    from nasflow.snn.neurons import reset_states
    from nasflow.train.trainer import spike_loss

    device = torch.device(device)
    supernet.to(device).train()
    rng = random.Random(seed)
    opt = torch.optim.Adam(supernet.parameters(), lr=lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1)) if schedule == "cosine" else None
    totals: dict[str, float] = {}
    paths = start = 0
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        if sched and resume_state.get("scheduler"):
            sched.load_state_dict(resume_state["scheduler"])
        start, paths, totals = int(resume_state["epoch"]), int(resume_state["paths"]), dict(resume_state["totals"])
        rng.setstate(_as_random_state(resume_state["path_rng"]))
        torch.set_rng_state(resume_state["torch_rng"])
        for g, st in zip(loader_generators(loader), resume_state["loader_rng"]):
            g.set_state(st)
    bar = tqdm(total=epochs * len(loader), initial=start * len(loader), desc="supernet", disable=not progress)
    for epoch in range(start, epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            supernet.set_path(sample_path(rng, supernet.choice_names, len(supernet.choice_blocks)))
            reset_states(supernet)
            with ActivityMonitor(supernet) as mon:
                out = supernet(x)
            loss = spike_loss("mse", out, y, num_classes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, value in path_costs(mon.summary()).items():
                totals[key] = totals.get(key, 0.0) + value
            paths += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.4f}")
        if sched:
            sched.step()
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                **(checkpoint_meta or {}), "complete": False, "epoch": epoch + 1, "paths": paths, "totals": totals,
                "state_dict": supernet.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched else None, "path_rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(), "loader_rng": [g.get_state() for g in loader_generators(loader)],
            })
        if on_epoch:
            on_epoch(epoch)
    bar.close()
    return {k: v / max(paths, 1) for k, v in totals.items()}


def _as_random_state(state) -> tuple:
    # random.Random.setstate wants tuples; a checkpoint round trip may hand back lists.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def path_costs(summary: dict) -> dict[str, float]:
    """The costs the fitness can use, from an ``ActivityMonitor`` summary (per sample)."""
    return {
        "spikes": summary["spikes_per_sample"],
        "synops": summary["synops_per_sample"],
        "macs": summary["macs_per_sample"],
        "neuron_updates": summary["neuron_updates_per_sample"],
    }
