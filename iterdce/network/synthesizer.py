"""Sequence models: from the input phases and the acquisition times to every target phase at once.

``IterativeSynthesizer`` unrolls one IterUNet over the phases, carrying the ConvLSTM state; with
``teacher`` phases it feeds the real phase k at step k (warm-up), without them its own outputs (recursion).
``SingleStepSynthesizer`` is the paper's baseline: one plain 3D U-Net per target phase, all fed the inputs.
Both share one call signature so trainers, validation and the predictor treat them alike.

With ``kinetic_prior`` (a plan option), every step that predicts a target phase also reads the kinetic
prior's estimate of that phase (network/kinetic_prior.py) as a third channel, last, so the residual output
(last channel + learned change) starts from the regression's estimate instead of the current phase. With three or
more inputs the prior reads the slope between the last two (``prior_estimate``).

Every input phase reaches the network. With ``input_mode`` ``sequence`` (the default) the iterative model's steps
whose target is an input are fed the real phase, so the ConvLSTM state has read the whole input sequence when the
first target is predicted; with ``channels`` every step reads all input phases as channels (before the current
phase) and the recursion starts at the last input.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from iterdce.core.kinetic_terms import slope_degree_for
from iterdce.network.config import DEFAULT_INPUT_MODE, ModelConfig, NetworkConfig
from iterdce.network.iterunet import build_network
from iterdce.network.kinetic_prior import KineticPrior


class IterativeSynthesizer(nn.Module):
    """iterU-Net unrolled from the last input phase to the last target time given (``num_phases``: the longest
    protocol of the plan, kept for the checkpoint's record)."""

    def __init__(self, network: NetworkConfig, input_phases: Sequence[int], num_phases: int,
                 kinetic_prior: bool = False, input_mode: str = DEFAULT_INPUT_MODE) -> None:
        super().__init__()
        self.net = build_network(network)
        self.input_phases = [int(p) for p in input_phases]
        self.num_phases = int(num_phases)
        self.kinetic_prior = KineticPrior(slope_degree_for(len(self.input_phases))) if kinetic_prior else None
        self.input_mode = input_mode

    def time_biases(self, times_s: Tensor) -> list[list[Tensor]] | None:
        """Every step's time-embedding biases for times_s [B, P] (None without a time embedding).

        Inference computes them once per volume with B = 1 and passes them to ``forward`` for every tile
        batch (they broadcast over the tiles): the times are the same for all tiles of a case.
        """
        embedding = self.net.time_embedding
        if embedding is None:
            return None
        return [embedding(times_s[:, source + 1], times_s[:, source]) for source in range(1, times_s.shape[1] - 1)]

    def forward(self, inputs: Tensor, times_s: Tensor, teacher: Tensor | None = None,
                time_biases: list[list[Tensor]] | None = None) -> Tensor:
        """inputs [B, n_in, X, Y, Z], times_s [B, P] -> targets [B, P - n_in, X, Y, Z].

        P is the length of ``times_s``, not a fixed count: the recursion runs to the last time given (a batch
        padded to its longest case, or any requested target times at prediction).

        Steps run from phase 1 on: a step whose target is an input phase is always fed the real phase (it
        warms the ConvLSTM state up); with ``input_mode`` ``channels`` they run from the last input on, each
        reading every input. ``teacher`` [B, P, ...] feeds real phases to every step.
        ``time_biases``: ``self.time_biases(times_s)`` computed beforehand (see there).
        """
        n_in = len(self.input_phases)
        every_input = self.input_mode == "channels"
        first = n_in - 1 if every_input else 1
        pre = inputs[:, :1]
        current = inputs[:, first:first + 1]
        state = None
        outputs = []
        for source in range(first, times_s.shape[1] - 1):
            target = source + 1
            channels = [inputs, current] if every_input else [pre, current]
            if self.kinetic_prior is not None:  # a warm-up step (target is an input) starts from the current phase
                channels.append(current if target < n_in else prior_estimate(self.kinetic_prior, inputs, times_s,
                                                                             target))
            prediction, state = self.net(torch.cat(channels, dim=1), times_s[:, target], times_s[:, source], state,
                                         None if time_biases is None else time_biases[source - 1])
            if target >= n_in:
                outputs.append(prediction)
            if target < n_in:
                current = inputs[:, target:target + 1]
            elif teacher is not None:
                current = teacher[:, target:target + 1]
            else:
                current = prediction
        return torch.cat(outputs, dim=1)


class SingleStepSynthesizer(nn.Module):
    """One plain U-Net (no time embedding, no ConvLSTM) per target phase, each fed pre + last input."""

    def __init__(self, network: NetworkConfig, input_phases: Sequence[int], num_phases: int,
                 kinetic_prior: bool = False) -> None:
        super().__init__()
        plain = dataclasses.replace(network, use_time_embedding=False, use_convlstm=False)
        self.input_phases = [int(p) for p in input_phases]
        self.num_phases = int(num_phases)
        self.nets = nn.ModuleList(build_network(plain) for _ in range(num_phases - len(self.input_phases)))
        self.kinetic_prior = KineticPrior(slope_degree_for(len(self.input_phases))) if kinetic_prior else None

    def forward(self, inputs: Tensor, times_s: Tensor, teacher: Tensor | None = None) -> Tensor:
        """inputs [B, n_in, ...] -> targets [B, P - n_in, ...]; ``teacher`` is unused (no recursion)."""
        pre, last = inputs[:, :1], inputs[:, -1:]
        n_in = len(self.input_phases)
        if times_s.shape[1] > self.num_phases:
            raise ValueError(f"the single-step model has one network per target of up to {self.num_phases} phases, "
                             f"asked for {times_s.shape[1]}")
        outputs = []
        for j, net in enumerate(self.nets[:times_s.shape[1] - n_in]):
            channels = [pre, last]
            if self.kinetic_prior is not None:
                channels.append(prior_estimate(self.kinetic_prior, inputs, times_s, n_in + j))
            outputs.append(net(torch.cat(channels, dim=1), times_s[:, n_in + j], times_s[:, n_in - 1])[0])
        return torch.cat(outputs, dim=1)


def prior_estimate(prior: KineticPrior, inputs: Tensor, times_s: Tensor, target: int) -> Tensor:
    """The prior's estimate of phase ``target`` from ``inputs`` [B, n_in, ...] (pre first, last input last; the one
    before it too where the prior reads the slope) at ``times_s`` [B, P]."""
    n_in = inputs.shape[1]
    previous = (inputs[:, n_in - 2:n_in - 1], times_s[:, n_in - 2]) if prior.slope_degree else (None, None)
    estimate: Tensor = prior(inputs[:, :1], inputs[:, n_in - 1:n_in], times_s[:, n_in - 1], times_s[:, target],
                             *previous)
    return estimate


def build_synthesizer(config: ModelConfig) -> nn.Module:
    """Rebuild a synthesizer from its typed config (``ModelConfig.from_dict`` of a checkpoint's header)."""
    if config.kind == "iterative":
        return IterativeSynthesizer(config.network, config.input_phases, config.num_phases, config.kinetic_prior,
                                    config.input_mode)
    return SingleStepSynthesizer(config.network, config.input_phases, config.num_phases, config.kinetic_prior)
