"""The ``--device`` flag: which torch device a command runs on (training, prediction, the demo)."""
from __future__ import annotations

import re

import torch

from iterdce.core.errors import UsageError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def choose_device(preference: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU, a GPU index beyond the machine's, or any
    other name is one UsageError naming the flag."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", preference):
        raise UsageError(f"--device {preference}: choose {DEVICE_CHOICES}")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {preference}: no CUDA device is available")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {preference}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0-cuda:{torch.cuda.device_count() - 1})")
    return device
