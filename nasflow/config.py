"""Typed configuration: dataclasses with YAML defaults, dotted overrides, and checked keys/types.

``from_dict`` rejects unknown keys and wrong types with the dotted key path in the message
(``train.lr: expected float, got 'fast'``), before any work starts.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nasflow.snn.blocks import NeuronSpec
from nasflow.train.trainer import TrainConfig

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "TrainRunConfig", "apply_overrides", "from_dict", "to_dict"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key is unknown, has the wrong type, or an impossible value."""


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (``safe_load``; empty file: ``{}``); ``ConfigError`` naming the file when
    it cannot be read, is not UTF-8 or YAML, or holds something other than a mapping at the top level."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    return data


@dataclass
class DataConfig:
    """Which dataset to load and how."""

    name: str = "digits"
    data_dir: str | None = None
    augment: str = "standard"  # none | standard | cutout
    T: int | None = None  # time bins of event datasets (their default when unset)
    num_workers: int = 0
    size: int | None = None  # event/stereo frames resized (stereo-dots generated) at size x size; None: native
    train_samples: int | None = None  # train on the first N samples of the train split (None: all)
    test_samples: int | None = None  # evaluate on the first N samples of the test split (None: all)

    def __post_init__(self) -> None:
        bad = [k for k in ("size", "train_samples", "test_samples") if getattr(self, k) is not None
               and getattr(self, k) < 1]
        if bad:
            raise ConfigError(f"data.{bad[0]} must be at least 1 (or unset), got {getattr(self, bad[0])}")


@dataclass
class ModelConfig:
    """Which network to build (``name`` in the model registry) and its size."""

    name: str = "autosnn"
    arch: str = "all-SCB_k3"
    channels: int = 16
    steps: int = 8
    vote: int = 10
    neuron: NeuronSpec | None = field(default_factory=NeuronSpec)  # None: the model's own
    options: dict[str, Any] = field(default_factory=dict)  # further keyword arguments of the model's factory
    temporal: str | None = None  # per-layer neuron dynamics, 'layer:decay=0.35;...' (nasflow.spaces.temporal; TPS)


@dataclass
class TrainRunConfig:
    """Everything ``nasflow train`` needs; saved resolved as ``config.yaml`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=32, lr=5e-3))

    @classmethod
    def load(cls, path: str | Path) -> TrainRunConfig:
        """Read a YAML file (missing keys keep their defaults)."""
        return from_dict(cls, load_yaml_mapping(path), defaults=cls())


_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
        errors = []
        for option in typing.get_args(hint):
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _EXPONENT.match(value.strip()):
        return float(value)  # YAML 1.1 (PyYAML) reads 5e-3, without a dot, as a string
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):  # an optional section, e.g. ``NeuronSpec | None``
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return from_dict(hint, value, prefix=key + ".")
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], defaults: T | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML keys may be numbers, None, ...
    if unknown:
        keys = ", ".join(prefix + str(k) for k in unknown)
        raise ConfigError(f"unknown config key(s) {keys}; known at this level: {sorted(names)}")
    base = defaults if defaults is not None else cls()
    values = {}
    for name in names:
        current = getattr(base, name)
        if name not in data:
            values[name] = current
            continue
        hint = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, data[name], defaults=current, prefix=key + ".")
        else:
            values[name] = _check_type(data[name], hint, key)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON view of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(cfg: T, overrides: dict[str, Any]) -> T:
    """Return ``cfg`` with dotted-key overrides applied (``{"train.lr": 0.01}``), type-checked."""
    data = to_dict(cfg)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key {dotted!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"unknown config key {dotted!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)
