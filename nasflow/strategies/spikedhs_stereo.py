"""SpikeDHS's joint cell and path search on stereo (paper §4.1.2, §4.5): first-order bi-level over α and β.

The relaxed network is ``SiameseStereo(RelaxedTrellisNet)`` (``nasflow.strategies.spikedhs_trellis``); its loss
is PDS's sub-pixel cross-entropy on the up-sampled cost volume. As in the cell search, per pair of batches α and
β take one Adam step (lr 1e-3, weight decay 1e-3, betas (0.5, 0.999)) on half B after ``warmup`` epochs, then
the weights take one SGD step (momentum 0.9, weight decay 3e-4, clipped at 5, cosine from ``lr_w`` to
``lr_min``) on half A. The decoded architecture is the cell α selects and the Viterbi path under β
(``TrellisSpace.decode``); ``evaluate`` runs the decoded path network (``nasflow.snn.trellis.TrellisPathNet``)
with the weights it inherits and reports one-pixel accuracy as ``accuracy`` and the mean disparity error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from nasflow.snn.blocks import NeuronSpec
from nasflow.snn.dhs import SPIKEDHS_NEURON
from nasflow.snn.neurons import reset_states
from nasflow.snn.stereo import SiameseStereo, disparity_metrics, subpixel_cross_entropy, subpixel_map
from nasflow.snn.trellis import TrellisPathNet
from nasflow.spaces.trellis import TrellisSpace
from nasflow.strategies.intraining import InTrainingStrategy
from nasflow.strategies.spikedhs import set_cosine_lr, weight_step
from nasflow.strategies.spikedhs_trellis import RelaxedTrellisNet, node_key
from nasflow.train.tasks import StereoTask

__all__ = ["TrellisStereoStrategy"]


class TrellisStereoStrategy(InTrainingStrategy):
    """Bi-level α/β search of a SpikeDHS trellis feature network for stereo matching (module docstring)."""

    name = "spikedhs-trellis"

    def __init__(self, in_shape: Sequence[int], disparities: int, channels: int = 4, features: int | None = None,
                 epochs: int = 10, warmup: int = 3, lr_w: float = 0.05, lr_min: float = 1e-3,
                 lr_alpha: float = 1e-3, weight_decay: float = 3e-4, alpha_weight_decay: float = 1e-3,
                 neuron: NeuronSpec | None = None, device: torch.device | str = "cpu") -> None:
        checks = {"channels": channels >= 1, "disparities": disparities >= 2, "epochs": epochs >= 1,
                  "warmup": warmup >= 0, "lr_w": lr_w > 0, "lr_min": 0 <= lr_min <= lr_w, "lr_alpha": lr_alpha > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid trellis search setting(s): {', '.join(bad)}")
        self.in_shape = tuple(int(s) for s in in_shape)  # (T, 4, H, W) of a stereo sample
        if len(self.in_shape) != 4 or self.in_shape[1] != 4:
            raise ValueError(f"a stereo sample is [T, 4, H, W] (left ON/OFF, right ON/OFF), got {self.in_shape}")
        self.disparities, self.channels = int(disparities), int(channels)
        self.features = int(features or channels)
        self.epochs, self.warmup = int(epochs), int(warmup)
        self.lr_w, self.lr_min, self.lr_alpha = float(lr_w), float(lr_min), float(lr_alpha)
        self.weight_decay, self.alpha_weight_decay = float(weight_decay), float(alpha_weight_decay)
        self.neuron = neuron or SPIKEDHS_NEURON
        self.device = torch.device(device)
        self.model: SiameseStereo | None = None
        self.space: TrellisSpace | None = None
        self.epoch, self.updates = 0, 0

    def settings(self) -> dict[str, Any]:
        return {"in_shape": list(self.in_shape), "disparities": self.disparities, "channels": self.channels,
                "features": self.features, "epochs": self.epochs, "warmup": self.warmup, "lr_w": self.lr_w,
                "lr_min": self.lr_min, "lr_alpha": self.lr_alpha, "weight_decay": self.weight_decay,
                "alpha_weight_decay": self.alpha_weight_decay, "neuron": self.neuron.to_dict()}

    def _stereo(self, features: nn.Module, upsample: int = 1) -> SiameseStereo:
        """The stereo model on ``features`` whose output reaches level 0 after ``upsample`` (host)."""
        assert self.space is not None
        _, _, h, w = self.in_shape
        size = self.space.trellis.sizes(min(h, w))[0]
        return SiameseStereo(features, (h, w), (size * h // min(h, w), size * w // min(h, w)), self.disparities,
                             upsample)

    def relax(self, space: Any) -> SiameseStereo:
        if not isinstance(space, TrellisSpace):
            raise TypeError(f"the trellis strategy searches a TrellisSpace, got {type(space).__name__}")
        self.space = space
        net = RelaxedTrellisNet(space.cells, space.trellis, (2, *self.in_shape[2:]), self.channels, self.features,
                                self.neuron)
        self.model = self._stereo(net).to(self.device)
        arch = {id(p) for p in net.arch_parameters()}
        weights = [p for p in self.model.parameters() if id(p) not in arch and p.requires_grad]
        self.opt_w = torch.optim.SGD(weights, lr=self.lr_w, momentum=0.9, weight_decay=self.weight_decay)
        self.opt_alpha = torch.optim.Adam(net.arch_parameters(), lr=self.lr_alpha, betas=(0.5, 0.999),
                                          weight_decay=self.alpha_weight_decay)
        self.epoch, self.updates = 0, 0
        return self.model

    def _model(self) -> SiameseStereo:
        if self.model is None:
            raise RuntimeError("call relax(space) before using the strategy")
        return self.model

    def _net(self) -> RelaxedTrellisNet:
        return self._model().features  # type: ignore[return-value]

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        set_cosine_lr(self.opt_w, epoch, self.epochs, self.lr_w, self.lr_min)

    def _loss(self, model: SiameseStereo, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, d = (t.to(self.device) for t in batch)
        reset_states(model)
        cost = model(x)
        return subpixel_cross_entropy(cost, d, disparity_step=model.disparity_step), cost, d

    def step(self, batch_train, batch_val) -> dict[str, float]:
        model, net = self._model(), self._net()
        model.train()
        logs: dict[str, float] = {}
        if self.epoch >= self.warmup:
            loss_v, _, _ = self._loss(model, batch_val)
            self.opt_alpha.zero_grad(set_to_none=True)
            loss_v.backward(inputs=net.arch_parameters())
            self.opt_alpha.step()
            logs["val_loss"] = float(loss_v)
        loss_t, cost, d = self._loss(model, batch_train)
        weight_step(self.opt_w, loss_t, [p for g in self.opt_w.param_groups for p in g["params"]], "trellis")
        self.updates += 1
        metrics = disparity_metrics(subpixel_map(cost.detach(), disparity_step=model.disparity_step), d)
        logs.update(train_loss=float(loss_t), train_one_pixel=metrics["one_pixel_accuracy"],
                    lr_w=self.opt_w.param_groups[0]["lr"])
        return logs

    def arch(self):
        """The ``TrellisArch`` the current α and β select."""
        net = self._net()
        assert self.space is not None
        return self.space.decode(net.alpha.detach().cpu().tolist(), net.beta.detach().cpu().tolist())

    def decode(self) -> tuple[str, ...]:
        return (str(self.arch()),)

    def arch_weights(self) -> list[list[float]]:
        net = self._net()
        rows = torch.softmax(net.alpha, -1).detach().cpu().tolist()
        probs = net.move_probabilities().detach().cpu()
        return rows + [probs[layer, level].tolist() for layer in range(probs.shape[0])
                       for level in range(probs.shape[1])]

    def decoded_network(self) -> SiameseStereo:
        """The decoded path network (as a stereo model) with the weights it inherits from the relaxed one."""
        assert self.space is not None
        net, arch = self._net(), self.arch()
        path_net = TrellisPathNet(arch.cell.nodes, arch.path, self.space.trellis, (2, *self.in_shape[2:]),
                                  self.channels, self.features, self.neuron).to(self.device)
        path_net.stem.load_state_dict(net.stem.state_dict())
        for layer, level in enumerate(arch.path):
            key = node_key(layer, level)
            for mine, theirs in ((path_net.in1[layer], net.in1[key]), (path_net.in0[layer], net.in0[key])):
                mine.sn.load_state_dict(theirs.sn.state_dict())
                for src, module in mine.sources.items():
                    module.load_state_dict(theirs.sources[src].state_dict())
            cell, relaxed = path_net.cells[layer], net.cells[key]
            cell.nodes.load_state_dict(relaxed.nodes.state_dict())
            for j, node in enumerate(cell.genotype):
                for op, k in node:
                    cell.edges[f"n{j}_{k}"].load_state_dict(relaxed.edges[f"n{j}_{k}"][op].state_dict())
        path_net.head.sn.load_state_dict(net.head.sn.state_dict())
        last = str(arch.path[-1])
        path_net.head.sources[last].load_state_dict(net.head.sources[last].state_dict())
        model = self._stereo(path_net, upsample=path_net.output_factor)
        model.scale.data.copy_(self._model().scale.data)
        return model.to(self.device)

    def evaluate(self, loader: Iterable) -> dict[str, Any]:
        from nasflow.train.trainer import evaluate

        model = self.decoded_network()
        ev = evaluate(model, loader, self.device, task=StereoTask(model.disparity_step))
        return {"accuracy": ev["accuracy"],
                "costs": {"spikes": ev["spikes_per_sample"] * 2,  # the features run once per camera
                          "mean_disparity_error": ev["mean_disparity_error"]}}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self._model().state_dict(), "opt_w": self.opt_w.state_dict(),
                "opt_alpha": self.opt_alpha.state_dict(), "updates": self.updates, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._model().load_state_dict(state["model"])
        self.opt_w.load_state_dict(state["opt_w"])
        self.opt_alpha.load_state_dict(state["opt_alpha"])
        self.updates, self.epoch = int(state["updates"]), int(state["epoch"])
