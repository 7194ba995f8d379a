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
from collections.abc import Sequence

from torch import Tensor, nn

from iterdce.network.blocks import DecoderStage, EncoderStage
from iterdce.network.config import NetworkConfig
from iterdce.network.convlstm import ConvLSTMCell3D, LSTMState
from iterdce.network.time_embedding import TimeEmbedding


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
        cfg = NetworkConfig.from_dict({"in_channels": in_channels, "features_per_stage": features_per_stage,
                                       "pool_per_stage": pool_per_stage, "time_embedding_dim": time_embedding_dim,
                                       "time_scale_s": time_scale_s, "use_time_embedding": use_time_embedding,
                                       "use_convlstm": use_convlstm})
        self._config = cfg
        feats = list(cfg.features_per_stage)
        pools = [list(p) for p in cfg.pool_per_stage]
        self.divisor = tuple(math.prod(p[axis] for p in pools) for axis in range(3))

        stride_per_stage = [[1, 1, 1], *pools]
        in_per_stage = [cfg.in_channels, *feats[:-1]]
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
    def config(self) -> NetworkConfig:
        """The constructor arguments, typed (``to_dict()``: the JSON form checkpoints store)."""
        return self._config

    def _check_inputs(self, x: Tensor, target_time_s: Tensor, source_time_s: Tensor) -> None:
        """Shape checks only (python ints, no host sync)."""
        if x.ndim != 5 or x.shape[1] != self._config.in_channels:
            raise ValueError(
                f"iterU-Net input must be [B, {self._config.in_channels}, X, Y, Z], got {tuple(x.shape)}"
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


def build_network(config: NetworkConfig) -> IterUNet:
    """The IterUNet of a typed network config."""
    return IterUNet(config.in_channels, config.features_per_stage, config.pool_per_stage, config.time_embedding_dim,
                    config.time_scale_s, config.use_time_embedding, config.use_convlstm)
