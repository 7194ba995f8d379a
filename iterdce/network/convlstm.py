"""3D ConvLSTM cell that carries temporal memory from one synthesis step to the next.

The gates are computed by one 3x3x3 convolution over concat[features, hidden]; the cell and hidden
states are kept in float32 (also under bf16 autocast) so the memory does not lose precision across steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LSTMState = tuple[Tensor, Tensor]


class ConvLSTMCell3D(nn.Module):
    """ConvLSTM cell (Shi et al. 2015) with 3x3x3 gates; returns the new hidden state and (h, c)."""

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv3d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size=3, padding=1)
        bias = self.gates.bias
        if bias is not None:
            with torch.no_grad():  # forget-gate bias 1: remember by default at the start of training
                bias.zero_()
                bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def zero_state(self, x: Tensor) -> LSTMState:
        """Zero hidden and cell state (float32) matching the batch and spatial size of x."""
        shape = (x.shape[0], self.hidden_channels, *x.shape[2:])
        zeros = torch.zeros(shape, device=x.device, dtype=torch.float32)
        return zeros, zeros.clone()

    def forward(self, x: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        if state is None:
            state = self.zero_state(x)
        h_prev, c_prev = state
        expected = (x.shape[0], self.hidden_channels, *x.shape[2:])
        if tuple(h_prev.shape) != expected or tuple(c_prev.shape) != expected:
            raise ValueError(
                f"ConvLSTM state shapes {tuple(h_prev.shape)}, {tuple(c_prev.shape)} do not match the "
                f"features: expected {expected}"
            )
        gates = self.gates(torch.cat([x, h_prev.to(x.dtype)], dim=1)).float()
        i, f, o, g = torch.chunk(gates, 4, dim=1)
        c = torch.sigmoid(f) * c_prev.float() + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h.to(x.dtype), (h, c)
