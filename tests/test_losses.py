"""Tests for the synthesis losses (SSIM, GDL, L1, Med3D perceptual) and Med3D weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iterdce.losses.synthesis import (
    DEFAULT_LOSS_WEIGHTS,
    MED3D_ENV,
    SynthesisLoss,
    gradient_difference_loss,
    ssim3d,
)
from iterdce.network.med3d import Med3DFeatures, Med3DWeightsError, ResNet10, load_med3d_weights

torch.set_num_threads(1)


def volume(seed: int = 0, shape=(1, 1, 16, 16, 12)) -> torch.Tensor:
    """Smooth structured volume (sum of blobs) with values of order 1, like TI-normalised MRI."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(0, 1, n) for n in shape[2:]], indexing="ij"))
    out = torch.zeros(shape[2:])
    for _ in range(5):
        centre = torch.rand(3, generator=g)[:, None, None, None]
        out += torch.exp(-((grid - centre) ** 2).sum(0) / 0.02) * (1 + torch.rand(1, generator=g))
    return out.expand(shape).clone()


@pytest.fixture(scope="module")
def med3d_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResNet10, Path, Path]:
    """A random ResNet-10 saved in MedicalNet's form ({"state_dict": module.*} + head) and bare."""
    torch.manual_seed(0)
    net = ResNet10()
    with torch.no_grad():  # non-trivial BN statistics so buffers are checked too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    root = tmp_path_factory.mktemp("med3d")
    wrapped = {f"module.{k}": v for k, v in net.state_dict().items()}
    wrapped["module.conv_seg.0.weight"] = torch.zeros(512, 32, 2, 2, 2)
    medicalnet_path, bare_path = root / "resnet_10_23dataset.pth", root / "bare.pth"
    torch.save({"epoch": 3, "state_dict": wrapped}, medicalnet_path)
    torch.save(net.state_dict(), bare_path)
    return net, medicalnet_path, bare_path


def test_ssim_identity_noise_and_data_range() -> None:
    x = volume()
    assert torch.allclose(ssim3d(x, x, data_range=2.0), torch.tensor(1.0), atol=1e-6)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    values = [ssim3d(x, x + s * noise, data_range=2.0).item() for s in (0.05, 0.2, 0.5)]
    assert values[0] < 1.0 and values[0] > values[1] > values[2]
    small, large = (ssim3d(x, x + 0.2 * noise, data_range=r) for r in (1.0, 100.0))
    assert large > small + 0.1  # a larger range makes the same error look smaller
    with pytest.raises(ValueError, match="data_range"):
        ssim3d(x, x, data_range=0.0)


def test_ssim_window_shrinks_on_thin_axes() -> None:
    x = volume(shape=(2, 1, 16, 16, 4))
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    value = ssim3d(x, y, data_range=2.0)
    assert torch.isfinite(value) and 0.0 < value < 1.0


def test_ssim_mask_selects_region() -> None:
    x = volume()
    y = x.clone()
    y[..., :8, :, :] += torch.randn(y[..., :8, :, :].shape, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros_like(x)
    mask[..., 8:, :, :] = 1
    assert ssim3d(x, y, data_range=2.0, mask=mask) > ssim3d(x, y, data_range=2.0) + 0.05


def test_gradient_difference_loss() -> None:
    x = volume()
    assert gradient_difference_loss(x, x) == 0
    assert gradient_difference_loss(x, x + 3.7).abs() < 1e-6
    assert gradient_difference_loss(x, 2 * x) > 0
    ramp = torch.arange(4.0).reshape(1, 1, 4, 1, 1).expand(1, 1, 4, 3, 2)
    # |d/dx| of ramp is 1 everywhere, of a constant 0; other axes have zero gradient in both
    assert torch.allclose(gradient_difference_loss(ramp, torch.zeros_like(ramp)), torch.tensor(1.0))


def test_l1_component_and_total_without_perceptual(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MED3D_ENV, raising=False)
    loss = SynthesisLoss(DEFAULT_LOSS_WEIGHTS, data_range=3.0)
    assert not loss.perceptual_enabled
    assert "DISABLED" in loss.describe() and "\n" not in loss.describe()
    pred, target = volume(0), volume(1)
    pred.requires_grad_(True)
    total, parts = loss(pred, target)
    assert set(parts) == {"l1", "ssim", "gradient_difference"}
    assert torch.allclose(parts["l1"], (pred - target).abs().mean())
    assert torch.allclose(parts["ssim"], 1 - ssim3d(pred, target, data_range=3.0))
    expected = 0.1 * parts["l1"] + parts["ssim"] + 0.1 * parts["gradient_difference"]
    assert torch.allclose(total, expected)
    assert all(not v.requires_grad for v in parts.values())
    total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_masked_l1() -> None:
    loss = SynthesisLoss({**DEFAULT_LOSS_WEIGHTS, "perceptual": 0.0}, data_range=3.0)
    pred, target = torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 8)
    target[..., :4, :, :] = 2.0
    mask = torch.zeros_like(pred)
    mask[..., :2, :, :] = 1.0
    _, parts = loss(pred, target, mask)
    assert torch.allclose(parts["l1"], torch.tensor(2.0))


def test_loss_weights_validated() -> None:
    with pytest.raises(ValueError, match="loss_weights.l2: unknown loss term"):
        SynthesisLoss({"l1": 1.0, "l2": 1.0}, data_range=1.0)
    assert SynthesisLoss({"l1": 1.0}, data_range=1.0).weights == DEFAULT_LOSS_WEIGHTS | {"l1": 1.0}  # defaults
    with pytest.raises(ValueError, match="non-negative"):
        SynthesisLoss({**DEFAULT_LOSS_WEIGHTS, "l1": -1.0}, data_range=1.0)
    with pytest.raises(ValueError, match="data_range"):
        SynthesisLoss(DEFAULT_LOSS_WEIGHTS, data_range=0.0)


def test_med3d_loads_both_checkpoint_forms(med3d_files) -> None:
    net, medicalnet_path, bare_path = med3d_files
    reference = net.state_dict()
    for path in (medicalnet_path, bare_path):
        torch.manual_seed(42)
        fresh = ResNet10()
        assert not torch.equal(fresh.conv1.weight, net.conv1.weight)
        load_med3d_weights(fresh, path)
        loaded = fresh.state_dict()
        assert loaded.keys() == reference.keys()
        for key, value in reference.items():
            assert torch.equal(loaded[key], value), key


def test_med3d_parameter_names_match_medicalnet() -> None:
    names = set(ResNet10().state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.bias", "layer4.0.bn2.weight", "layer4.0.downsample.0.weight"):
        assert key in names
    assert "layer1.0.downsample.0.weight" not in names  # 64 -> 64, stride 1: no projection
    assert ResNet10().layer4[0].conv1.dilation == (4, 4, 4)


def test_med3d_bad_files_raise_clear_errors(tmp_path: Path, med3d_files) -> None:
    net, _, _ = med3d_files
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(Med3DWeightsError, match="nowhere.pth"):
        load_med3d_weights(ResNet10(), missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(Med3DWeightsError, match="garbage.pth"):
        load_med3d_weights(ResNet10(), garbage)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("layer4")}, partial)
    with pytest.raises(Med3DWeightsError, match=r"partial.pth.*layer4\.0\.conv1\.weight"):
        load_med3d_weights(ResNet10(), partial)
    with pytest.raises(Med3DWeightsError, match="nowhere.pth"):
        SynthesisLoss(DEFAULT_LOSS_WEIGHTS, data_range=1.0, med3d_weights=missing)


def test_med3d_features_frozen(med3d_files) -> None:
    _, medicalnet_path, _ = med3d_files
    features = Med3DFeatures(medicalnet_path)
    features.train()
    assert not features.training and not features.backbone.training
    assert all(not p.requires_grad for p in features.parameters())
    maps = features(torch.randn(2, 1, 16, 16, 16))
    assert [tuple(m.shape) for m in maps] == [(2, 64, 4, 4, 4), (2, 128, 2, 2, 2), (2, 256, 2, 2, 2),
                                              (2, 512, 2, 2, 2)]


def test_perceptual_term(med3d_files, monkeypatch: pytest.MonkeyPatch) -> None:
    _, medicalnet_path, _ = med3d_files
    monkeypatch.setenv(MED3D_ENV, str(medicalnet_path))  # picked up from the environment
    loss = SynthesisLoss(DEFAULT_LOSS_WEIGHTS, data_range=3.0)
    assert loss.perceptual_enabled and str(medicalnet_path) in loss.describe()
    target = volume(0, shape=(1, 1, 16, 16, 16))
    _, same = loss(target.clone(), target)
    assert same["perceptual"].abs() < 1e-6
    pred = volume(1, shape=(1, 1, 16, 16, 16)).requires_grad_(True)
    total, parts = loss(pred, target)
    assert parts["perceptual"] > 1e-3
    expected = 0.1 * parts["l1"] + parts["ssim"] + parts["perceptual"] + 0.1 * parts["gradient_difference"]
    assert torch.allclose(total, expected)
    total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    off = SynthesisLoss({**DEFAULT_LOSS_WEIGHTS, "perceptual": 0.0}, data_range=3.0)
    assert not off.perceptual_enabled and "weight is 0" in off.describe()


def test_separable_filter_is_the_grouped_convolution() -> None:
    """The banded-matrix Gaussian filter of the SSIM loss computes what grouped 1D convolutions compute (the
    earlier implementation, kept in benchmarks/bench_ssim.py for its A/B)."""
    from benchmarks.bench_ssim import conv_filter
    from iterdce.core.ssim import gaussian_filter, gaussian_kernel

    x = torch.randn(2, 3, 13, 11, 7, generator=torch.Generator().manual_seed(4), requires_grad=True)
    kernels = [gaussian_kernel(w, 1.5, x.device) for w in (11, 9, 7)]
    reference = conv_filter(x, kernels)
    filtered = gaussian_filter(x, kernels, "valid")
    assert filtered.shape == reference.shape == (2, 3, 3, 3, 1)
    assert torch.allclose(filtered, reference, atol=1e-6)
    weights = torch.randn(reference.shape, generator=torch.Generator().manual_seed(5))
    (grad,) = torch.autograd.grad((filtered * weights).sum(), x)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), x)
    assert torch.allclose(grad, reference_grad, atol=1e-6)
