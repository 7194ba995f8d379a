"""The iterU-Net: a time-conditioned 3D U-Net with a ConvLSTM that predicts the next DCE phase.

One call is one synthesis step: from [pre-contrast, ..., current phase] and the (source, target)
acquisition times it predicts the next phase as current phase + a learned residual. The ConvLSTM state
is returned so the caller carries it from step to step (tile-major at inference, unrolled in training).

Design choices (documented here because trainers and checkpoints rely on them):
- Downsampling is a strided conv (see blocks.py); upsampling a transposed conv with kernel = stride = pool.
- The time bias of a stage is added to the stage's output just before its last LeakyReLU (see
  blocks.py for why); at stage 0 that is before the ConvLSTM, so the LSTM gates also see the times.
- The ConvLSTM output h *replaces* the stage-0 features (as in the paper's code): the skip connection and
  the first downsampling both read h, so all full-resolution information passes through the memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from iterdce.network.blocks import DecoderStage, EncoderStage
from iterdce.network.convlstm import ConvLSTMCell3D, LSTMState
from iterdce.network.time_embedding import TimeEmbedding

CONFIG_KEYS = (
    "in_channels",
    "features_per_stage",
    "pool_per_stage",
    "time_embedding_dim",
    "time_scale_s",
    "use_time_embedding",
    "use_convlstm",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_network_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a network config (the plan's "network" section) and return it normalised to JSON types.

    Raises ValueError naming the offending key when a key is missing, unknown or has a bad value.
    """
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
    return {
        "in_channels": int(in_channels),
        "features_per_stage": [int(f) for f in features],
        "pool_per_stage": [[int(p) for p in pool] for pool in pools],
        "time_embedding_dim": int(dim),
        "time_scale_s": float(scale),
        "use_time_embedding": bool(config["use_time_embedding"]),
        "use_convlstm": bool(config["use_convlstm"]),
    }


class IterUNet(nn.Module):
    """Time-conditioned 3D U-Net with a stage-0 ConvLSTM; predicts the next phase as a residual."""

    def __init__(
        self,
        in_channels: int = 2,
        features_per_stage: Sequence[int] = (16, 32, 64, 128),
        pool_per_stage: Sequence[Sequence[int]] = ((2, 2, 2),) * 3,
        time_embedding_dim: int = 64,
        time_scale_s: float = 365.0,
        use_time_embedding: bool = True,
        use_convlstm: bool = True,
    ) -> None:
        super().__init__()
        cfg = validate_network_config(
            {
                "in_channels": in_channels,
                "features_per_stage": features_per_stage,
                "pool_per_stage": pool_per_stage,
                "time_embedding_dim": time_embedding_dim,
                "time_scale_s": time_scale_s,
                "use_time_embedding": use_time_embedding,
                "use_convlstm": use_convlstm,
            }
        )
        self._config = cfg
        feats: list[int] = cfg["features_per_stage"]
        pools: list[list[int]] = cfg["pool_per_stage"]
        self.divisor = tuple(math.prod(p[axis] for p in pools) for axis in range(3))

        stride_per_stage = [[1, 1, 1], *pools]
        in_per_stage = [cfg["in_channels"], *feats[:-1]]
        self.encoder = nn.ModuleList(
            EncoderStage(c_in, c_out, stride) for c_in, c_out, stride in zip(in_per_stage, feats, stride_per_stage)
        )
        self.decoder = nn.ModuleList(
            DecoderStage(feats[s + 1], feats[s], pools[s]) for s in reversed(range(len(pools)))
        )
        decoder_channels = [feats[s] for s in reversed(range(len(pools)))]
        self.time_embedding = (
            TimeEmbedding(time_embedding_dim, time_scale_s, [*feats, *decoder_channels])
            if use_time_embedding
            else None
        )
        self.convlstm = ConvLSTMCell3D(feats[0], feats[0]) if use_convlstm else None
        self.final_conv = nn.Conv3d(feats[0], 1, kernel_size=1)
        nn.init.zeros_(self.final_conv.weight)
        if self.final_conv.bias is not None:
            nn.init.zeros_(self.final_conv.bias)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-ready dict (the plan's "network" section, for checkpoints)."""
        return {
            **self._config,
            "features_per_stage": list(self._config["features_per_stage"]),
            "pool_per_stage": [list(p) for p in self._config["pool_per_stage"]],
        }

    def _check_inputs(self, x: Tensor, target_time_s: Tensor, source_time_s: Tensor) -> None:
        """Shape checks only (python ints, no host sync)."""
        if x.ndim != 5 or x.shape[1] != self._config["in_channels"]:
            raise ValueError(
                f"iterU-Net input must be [B, {self._config['in_channels']}, X, Y, Z], got {tuple(x.shape)}"
            )
        bad = [s for s, d in zip(x.shape[2:], self.divisor) if s % d]
        if bad:
            raise ValueError(
                f"iterU-Net input spatial size {tuple(x.shape[2:])} must be divisible by the total pooling "
                f"{self.divisor} per axis"
            )
        for name, t in (("target_time_s", target_time_s), ("source_time_s", source_time_s)):
            if tuple(t.shape) != (x.shape[0],):
                raise ValueError(f"{name} must have shape [B] = [{x.shape[0]}], got {tuple(t.shape)}")

    def forward(
        self,
        x: Tensor,
        target_time_s: Tensor,
        source_time_s: Tensor,
        state: LSTMState | None = None,
        time_biases: list[Tensor] | None = None,
    ) -> tuple[Tensor, LSTMState | None]:
        """One step: x [B, C, X, Y, Z] (channel 0 pre-contrast, last = current phase) -> next phase [B, 1, ...].

        Returns the prediction and the ConvLSTM state (None when the ConvLSTM is switched off; a
        given state is then ignored). ``time_biases``: this step's ``time_embedding(target, source)``
        computed beforehand (batch 1 broadcasts over ``x``), so inference over many tiles with the same
        times runs the embedding once instead of once per tile batch.
        """
        self._check_inputs(x, target_time_s, source_time_s)
        biases: list[Tensor] | None = None
        if self.time_embedding is not None:
            biases = time_biases if time_biases is not None else self.time_embedding(target_time_s, source_time_s)
        n_enc = len(self.encoder)
        skips: list[Tensor] = []
        new_state: LSTMState | None = None
        h = x
        for s, stage in enumerate(self.encoder):
            h = stage(h, None if biases is None else biases[s])
            if s == 0 and self.convlstm is not None:
                h, new_state = self.convlstm(h, state)
            skips.append(h)
        for d, stage in enumerate(self.decoder):
            h = stage(h, skips[n_enc - 2 - d], None if biases is None else biases[n_enc + d])
        return x[:, -1:] + self.final_conv(h), new_state


def build_network(network_config: Mapping[str, Any]) -> IterUNet:
    """Build an IterUNet from the plan's "network" section (exactly the keys of IterUNet.config)."""
    cfg = validate_network_config(network_config)
    return IterUNet(**cfg)
