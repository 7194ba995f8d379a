"""MedicalNet (Med3D, Chen et al. 2019) ResNet-10 as a frozen feature extractor for the perceptual loss.

The layer layout and parameter names follow MedicalNet's `resnet10` (BasicBlock, layers [1, 1, 1, 1],
shortcut type B, layer3/layer4 with stride 1 and dilation 2/4) so its released checkpoints
(e.g. resnet_10_23dataset.pth) load directly; the segmentation head (conv_seg.*) is not built.
Weights come from a local file only; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from iterdce.core.errors import IterdceError, torch_load_reason

IGNORED_PREFIXES = ("conv_seg.",)
MODULE_PREFIX = "module."


class Med3DWeightsError(IterdceError, ValueError):
    """A Med3D weights file that cannot be read or does not match the ResNet-10 layout."""


def _conv3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3x3 conv-BN units with a residual; `downsample` (1x1x1 conv + BN) when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3(in_ch, out_ch, stride, dilation)
        self.bn1 = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU()
        self.conv2 = _conv3(out_ch, out_ch, 1, dilation)
        self.bn2 = nn.BatchNorm3d(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm3d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return cast(Tensor, self.relu(out + residual))


class ResNet10(nn.Module):
    """MedicalNet's ResNet-10 trunk (1 input channel); forward returns the outputs of layer1..layer4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, stride=2))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, dilation=2))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, dilation=4))

    def forward(self, x: Tensor) -> list[Tensor]:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            h = layer(h)
            features.append(h)
        return features


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a checkpoint ({"state_dict": {"module.*": ...}} or a bare state dict) with the prefix removed."""
    if not path.is_file():
        raise Med3DWeightsError(f"Med3D weights file {path} does not exist", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling / format problem: report the file
        raise Med3DWeightsError(f"cannot read Med3D weights file {path}: {torch_load_reason(exc)}", path) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise Med3DWeightsError(
            f"Med3D weights file {path} holds neither a state dict nor a dict with a 'state_dict' entry"
        )
    return {(k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k): v for k, v in obj.items()}


def load_med3d_weights(model: nn.Module, path: str | Path) -> None:
    """Load MedicalNet ResNet-10 weights from `path` into `model`, ignoring the segmentation head.

    BatchNorm `num_batches_tracked` buffers may be absent (older checkpoints); every other parameter
    and buffer must be present with the right shape, else Med3DWeightsError names the file and keys.
    """
    path = Path(path)
    loaded = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(IGNORED_PREFIXES)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in loaded and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in loaded if k not in expected]
    if missing or unexpected:
        raise Med3DWeightsError(
            f"Med3D weights file {path} does not match MedicalNet ResNet-10: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}"
        )
    wrong = [
        f"{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in loaded.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise Med3DWeightsError(f"Med3D weights file {path} has wrong shapes: {wrong[:8]}")
    merged = {**expected, **loaded}
    model.load_state_dict(merged, strict=True)


class Med3DFeatures(nn.Module):
    """Frozen MedicalNet ResNet-10 (eval mode, no gradients to its weights) returning layer1..4 features.

    Multi-channel inputs are folded into the batch, since the network takes one channel.
    """

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        self.weights_path = Path(weights_path)
        self.backbone = ResNet10()
        load_med3d_weights(self.backbone, self.weights_path)
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> Med3DFeatures:
        """Stay in eval mode whatever the caller asks (frozen BatchNorm statistics)."""
        super().train(False)
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != 5:
            raise ValueError(f"Med3D input must be [B, C, X, Y, Z], got {tuple(x.shape)}")
        b, c = x.shape[:2]
        return cast(list[Tensor], self.backbone(x.reshape(b * c, 1, *x.shape[2:])))
