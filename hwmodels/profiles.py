"""Chip profiles: data files (``hwmodels/chips/*.json``) with a source for every number.

A profile file holds ``name``, ``kind`` (``neuromorphic``, ``speck`` or ``accelerator``), ``description`` and
``params``: each parameter is either a bare value or ``{"value": v, "source": "...", "estimate": true|false}``.
A value of ``null`` means unknown (the term that needs it is left out and the report says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ChipProfile", "ProfileError", "load_profile", "list_profiles", "CHIPS_DIR", "PARAMS"]

CHIPS_DIR = Path(__file__).resolve().parent / "chips"

# name: (python types, required for these kinds)
_NUM = (int, float)
PARAMS: dict[str, tuple[tuple[type, ...], tuple[str, ...]]] = {
    "cores_per_chip": ((int,), ("neuromorphic", "speck")),
    "mesh_width": ((int,), ("neuromorphic",)),
    "mesh_height": ((int,), ("neuromorphic",)),
    "cores_per_tile": ((int,), ("neuromorphic",)),
    "neurons_per_core": ((int,), ("neuromorphic",)),
    "synapse_words_per_core": ((int,), ()),
    "word_bits": ((int,), ()),
    "weight_bits": ((int,), ()),
    "delay_bits": ((int,), ()),
    "tag_bits": ((int,), ()),
    "index_bits": ((int,), ()),
    "synapses_per_group": ((int,), ()),
    "group_header_bits": ((int,), ()),
    "fan_in_axons": ((int,), ()),
    "fan_out_axons": ((int,), ()),
    "destinations_per_neuron": ((int,), ()),
    "conv_weight_sharing": ((bool,), ()),
    "kernel_memory": ((list,), ("speck",)),
    "neuron_memory": ((list,), ("speck",)),
    "max_destinations": ((int,), ("speck",)),
    "max_kernel_size": ((int,), ()),
    "strides": ((list,), ()),
    "e_synop": (_NUM, ()),
    "e_synop_conv": (_NUM, ()),
    "e_ac": (_NUM, ()),
    "e_mac": (_NUM, ()),
    "graded_spike_bits": ((int,), ()),
    "e_update_active": (_NUM, ()),
    "e_update_inactive": (_NUM, ()),
    "e_message": (_NUM, ()),
    "e_hop_ew": (_NUM, ()),
    "e_hop_ns": (_NUM, ()),
    "e_mem_read": (_NUM, ()),
    "e_mem_write": (_NUM, ()),
    "p_static_per_chip": (_NUM, ()),
    "t_synop": (_NUM, ()),
    "t_update_active": (_NUM, ()),
    "t_update_inactive": (_NUM, ()),
    "t_message": (_NUM, ()),
    "t_hop_ew": (_NUM, ()),
    "t_hop_ns": (_NUM, ()),
    "t_barrier_min": (_NUM, ()),
    "t_barrier_max": (_NUM, ()),
    "barrier_tiles_max": ((int,), ()),
    "t_event": (_NUM, ()),
}
_KINDS = ("neuromorphic", "speck", "accelerator")


class ProfileError(ValueError):
    """A chip profile that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ChipProfile:
    """One chip: parameter values, their sources and which are estimates."""

    name: str
    kind: str
    description: str
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    estimates: frozenset[str] = frozenset()
    path: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        """A parameter's value (``default`` when absent or unknown)."""
        v = self.values.get(key)
        return default if v is None else v

    def to_dict(self) -> dict[str, Any]:
        """The profile in its file format."""
        params = {
            k: {"value": v, "source": self.sources.get(k, ""), "estimate": k in self.estimates}
            for k, v in self.values.items()
        }
        return {"name": self.name, "kind": self.kind, "description": self.description, "params": params}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str = "<dict>") -> ChipProfile:
        """Validate and build a profile; errors name ``path`` and the field."""
        if not isinstance(data, dict):
            raise ProfileError(f"{path}: a chip profile must be a JSON object")
        for key in ("name", "kind", "params"):
            if key not in data:
                raise ProfileError(f"{path}: missing field {key!r}")
        if not isinstance(data["name"], str) or not data["name"]:
            raise ProfileError(f"{path}: field 'name' must be a non-empty string")
        kind = data["kind"]
        if kind not in _KINDS:
            raise ProfileError(f"{path}: field 'kind' must be one of {', '.join(_KINDS)}, got {kind!r}")
        if not isinstance(data["params"], dict):
            raise ProfileError(f"{path}: field 'params' must be an object of parameter: value")
        values, sources, estimates = {}, {}, set()
        for key, raw in data["params"].items():
            if key not in PARAMS:
                raise ProfileError(f"{path}: unknown parameter params.{key}; known: {', '.join(sorted(PARAMS))}")
            value = raw
            if isinstance(raw, dict):
                if "value" not in raw:
                    raise ProfileError(f"{path}: params.{key} is an object without 'value'")
                value = raw["value"]
                sources[key] = str(raw.get("source", ""))
                if raw.get("estimate", False):
                    estimates.add(key)
            values[key] = _check_value(path, key, value)
        for key, (_, kinds) in PARAMS.items():
            if kind in kinds and values.get(key) is None:
                raise ProfileError(f"{path}: missing field params.{key} (required for a {kind} chip)")
        return cls(data["name"], kind, str(data.get("description", "")), values, sources, frozenset(estimates), path)


def _check_value(path: str, key: str, value: Any) -> Any:
    if value is None:
        return None
    types = PARAMS[key][0]
    if bool in types:
        if not isinstance(value, bool):
            raise ProfileError(f"{path}: params.{key} must be true or false, got {value!r}")
        return value
    if list in types:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ProfileError(f"{path}: params.{key} must be a list of integers, got {value!r}")
        if any(v < 0 for v in value):
            raise ProfileError(f"{path}: params.{key} has a negative entry: {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, types):
        want = "an integer" if types == (int,) else "a number"
        raise ProfileError(f"{path}: params.{key} must be {want}, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ProfileError(f"{path}: params.{key} must not be negative, got {value!r}")
    return value


def list_profiles() -> list[str]:
    """Names of the bundled chip profiles."""
    return sorted(p.stem for p in CHIPS_DIR.glob("*.json"))


def load_profile(name_or_path: str | Path | ChipProfile) -> ChipProfile:
    """A bundled profile by name (``loihi``) or a user's JSON file by path."""
    if isinstance(name_or_path, ChipProfile):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".json") or path.is_file()):
        path = CHIPS_DIR / f"{text}.json"
        if not path.is_file():
            raise ProfileError(
                f"unknown chip {text!r}; known chips: {', '.join(list_profiles())} "
                "(or pass the path of a profile .json file)"
            )
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ProfileError(f"{path}: cannot read chip profile ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: not valid JSON ({err})") from None
    return ChipProfile.from_dict(data, str(path))
