"""The network's typed configuration, the contract a checkpoint's header carries across the file boundary.

``NetworkConfig`` is one iterU-Net's topology (the plan's "network" section plus its input channels);
``ModelConfig`` is everything needed to rebuild a synthesizer: the model kind, its network, the input phases,
the number of phases, whether it reads the kinetic prior and how it reads the input phases. Checkpoints store
``ModelConfig.to_dict()`` (plain JSON types, loadable with ``torch.load(weights_only=True)``) and are read back
with ``ModelConfig.from_dict``, which names the offending key of a damaged or foreign header.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iterdce.core.checkpoint import CheckpointError

MODEL_KINDS = ("iterative", "single_step")
INPUT_CHANNELS = 2  # every step reads [pre-contrast, current phase] (+ the prior's estimate with a kinetic prior)
# how the input phases reach the iterative network: "sequence", the ConvLSTM's warm-up steps read them one by one
# (the default); "channels", every step reads all of them as channels and the recursion starts at the last input
INPUT_MODES = ("sequence", "channels")
DEFAULT_INPUT_MODE = "sequence"
CONFIG_KEYS = (
    "in_channels",
    "features_per_stage",
    "pool_per_stage",
    "time_embedding_dim",
    "time_scale_s",
    "use_time_embedding",
    "use_convlstm",
)


def input_channels(kinetic_prior: bool, n_inputs: int = 2, input_mode: str = DEFAULT_INPUT_MODE) -> int:
    """Channels one synthesis step reads: pre-contrast and the current phase (``channels``: every input phase and
    the current one), + the prior's estimate."""
    reads = n_inputs + 1 if input_mode == "channels" else INPUT_CHANNELS
    return reads + int(kinetic_prior)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class NetworkTopology:
    """The U-Net's stages and temporal parts: what a plan's "network" section and a built network share."""

    features_per_stage: tuple[int, ...]
    pool_per_stage: tuple[tuple[int, ...], ...]
    time_embedding_dim: int
    time_scale_s: float
    use_time_embedding: bool
    use_convlstm: bool


@dataclass(frozen=True)
class NetworkConfig(NetworkTopology):
    """One iterU-Net as built: its topology and its input channels (the constructor arguments of ``IterUNet``)."""

    in_channels: int

    @classmethod
    def from_dict(cls, config: Any) -> NetworkConfig:
        """Check a network config (JSON form) and build it; ValueError names the offending key when a key is
        missing, unknown or has a bad value."""
        if not isinstance(config, Mapping):
            raise ValueError(f"network config must be a dict, got {type(config).__name__}")
        missing = [k for k in CONFIG_KEYS if k not in config]
        unknown = sorted(k for k in config if k not in CONFIG_KEYS)
        if missing or unknown:
            raise ValueError(f"network config: missing keys {missing}, unknown keys {unknown}")
        in_channels = config["in_channels"]
        if not _is_int(in_channels) or in_channels < 1:
            raise ValueError(f"network config: in_channels must be an integer >= 1, got {in_channels!r}")
        features = config["features_per_stage"]
        if (
            isinstance(features, (str, bytes))
            or not isinstance(features, Sequence)
            or len(features) == 0
            or not all(_is_int(f) and f > 0 for f in features)
        ):
            raise ValueError(
                f"network config: features_per_stage must be a non-empty list of positive integers, "
                f"got {features!r}"
            )
        pools = config["pool_per_stage"]
        if isinstance(pools, (str, bytes)) or not isinstance(pools, Sequence):
            raise ValueError(f"network config: pool_per_stage must be a list of [x, y, z] lists, got {pools!r}")
        if len(pools) != len(features) - 1:
            raise ValueError(
                f"network config: pool_per_stage has {len(pools)} entries but features_per_stage has "
                f"{len(features)} stages; need len(pool_per_stage) == len(features_per_stage) - 1"
            )
        for i, pool in enumerate(pools):
            if (
                isinstance(pool, (str, bytes))
                or not isinstance(pool, Sequence)
                or len(pool) != 3
                or not all(_is_int(p) and p >= 1 for p in pool)
            ):
                raise ValueError(
                    f"network config: pool_per_stage[{i}] must be 3 positive integers (one per axis), got {pool!r}"
                )
        dim = config["time_embedding_dim"]
        if not _is_int(dim) or dim <= 0 or dim % 2:
            raise ValueError(f"network config: time_embedding_dim must be a positive even integer, got {dim!r}")
        scale = config["time_scale_s"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"network config: time_scale_s must be a positive number of seconds, got {scale!r}")
        for key in ("use_time_embedding", "use_convlstm"):
            if not isinstance(config[key], bool):
                raise ValueError(f"network config: {key} must be true or false, got {config[key]!r}")
        return cls(features_per_stage=tuple(int(f) for f in features),
                   pool_per_stage=tuple(tuple(int(p) for p in pool) for pool in pools), time_embedding_dim=int(dim),
                   time_scale_s=float(scale), use_time_embedding=bool(config["use_time_embedding"]),
                   use_convlstm=bool(config["use_convlstm"]), in_channels=int(in_channels))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists, not tuples), as checkpoints store it."""
        return {"in_channels": self.in_channels, "features_per_stage": list(self.features_per_stage),
                "pool_per_stage": [list(p) for p in self.pool_per_stage],
                "time_embedding_dim": self.time_embedding_dim, "time_scale_s": self.time_scale_s,
                "use_time_embedding": self.use_time_embedding, "use_convlstm": self.use_convlstm}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a synthesizer; stored in every checkpoint as ``model_config``."""

    kind: str  # one of MODEL_KINDS
    network: NetworkConfig
    input_phases: tuple[int, ...]
    num_phases: int
    kinetic_prior: bool = False
    input_mode: str = DEFAULT_INPUT_MODE  # one of INPUT_MODES

    @classmethod
    def from_plan(cls, kind: str, network: Mapping[str, Any], input_phases: Sequence[int], num_phases: int
                  ) -> ModelConfig:
        """The model of a plan's network section (its ``kinetic_prior`` and ``input_mode`` are the synthesizer's,
        not the U-Net's; the channel count follows from them, ``input_channels``)."""
        section = dict(network)
        prior = bool(section.pop("kinetic_prior", False))
        mode = section.pop("input_mode", DEFAULT_INPUT_MODE)
        channels = input_channels(prior, len(input_phases), mode)
        if section.get("in_channels", channels) != channels:
            raise ValueError(f"the synthesizer feeds {channels} channels per step, got in_channels "
                             f"{section['in_channels']}")
        return cls.from_dict({"kind": kind, "network": {**section, "in_channels": channels},
                              "input_phases": list(input_phases), "num_phases": num_phases, "kinetic_prior": prior,
                              "input_mode": mode})

    @classmethod
    def from_dict(cls, raw: Any) -> ModelConfig:
        """A checkpoint's ``model_config`` (checkpoints written before the kinetic prior or the input mode existed
        have no ``kinetic_prior`` / ``input_mode`` key: no prior, ``sequence``); ValueError names what is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"model_config must be a dict, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {"kind", "network", "input_phases", "num_phases", "kinetic_prior", "input_mode"})
        missing = [k for k in ("kind", "network", "input_phases", "num_phases") if k not in raw]
        if missing or unknown:
            raise ValueError(f"model_config: missing keys {missing}, unknown keys {unknown}")
        if raw["kind"] not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {raw['kind']!r}")
        phases = raw["input_phases"]
        if isinstance(phases, (str, bytes)) or not isinstance(phases, Sequence) or not all(_is_int(p) for p in phases):
            raise ValueError(f"model_config: input_phases must be a list of integers, got {phases!r}")
        if not _is_int(raw["num_phases"]) or raw["num_phases"] <= len(phases):
            raise ValueError(f"model_config: num_phases must be an integer above the input phases, got "
                             f"{raw['num_phases']!r}")
        prior = raw.get("kinetic_prior", False)
        if not isinstance(prior, bool):
            raise ValueError(f"model_config: kinetic_prior must be true or false, got {prior!r}")
        mode = raw.get("input_mode", DEFAULT_INPUT_MODE)
        if mode not in INPUT_MODES:
            raise ValueError(f"model_config: input_mode must be one of {INPUT_MODES}, got {mode!r}")
        if mode == "channels" and raw["kind"] != "iterative":
            raise ValueError(f"model_config: input_mode 'channels' is the iterative model's, not {raw['kind']!r}'s")
        network = NetworkConfig.from_dict(raw["network"])
        channels = input_channels(prior, len(phases), mode)
        if network.in_channels != channels:
            raise ValueError(f"the synthesizer feeds {channels} channels per step, got in_channels "
                             f"{network.in_channels}")
        return cls(raw["kind"], network, tuple(int(p) for p in phases), int(raw["num_phases"]), prior, mode)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form checkpoints store."""
        return {"kind": self.kind, "network": self.network.to_dict(), "input_phases": list(self.input_phases),
                "num_phases": self.num_phases, "kinetic_prior": self.kinetic_prior, "input_mode": self.input_mode}


def checkpoint_model_config(payload: Mapping[str, Any], path: Path) -> ModelConfig:
    """The typed ``model_config`` of a loaded checkpoint ``payload``; CheckpointError names ``path`` when the
    header cannot describe a network."""
    try:
        return ModelConfig.from_dict(payload["model_config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: its model_config cannot build a network ({exc})", path) from exc
