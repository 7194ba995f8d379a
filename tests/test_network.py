"""Tests for the iterU-Net: shapes, residual identity, ConvLSTM state, time embedding, ablations, config."""

from __future__ import annotations

import re

import pytest
import torch

from iterdce.network import IterUNet, NetworkConfig, build_network, sinusoidal_encoding
from iterdce.network.time_embedding import POSITION_SCALE

torch.set_num_threads(1)

ISO = [[2, 2, 2], [2, 2, 2]]
ANISO = [[2, 2, 1], [2, 2, 2]]


def tiny_net(pools=ANISO, **kwargs) -> IterUNet:
    torch.manual_seed(0)
    args = {"in_channels": 2, "features_per_stage": (4, 8, 16), "pool_per_stage": pools, "time_embedding_dim": 8}
    return IterUNet(**{**args, **kwargs})


def perturb_output_conv(net: IterUNet) -> None:
    """Give the zero-initialised output conv random weights so the residual branch shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        net.final_conv.weight.normal_(0.0, 0.5)
        net.final_conv.bias.normal_(0.0, 0.5)


def times(target: float, source: float, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((batch,), target), torch.full((batch,), source)


def test_config_round_trip_and_defaults() -> None:
    net = tiny_net(use_convlstm=False)
    cfg = net.config.to_dict()
    assert cfg == {
        "in_channels": 2,
        "features_per_stage": [4, 8, 16],
        "pool_per_stage": ANISO,
        "time_embedding_dim": 8,
        "time_scale_s": 365.0,
        "use_time_embedding": True,
        "use_convlstm": False,
    }
    rebuilt = build_network(NetworkConfig.from_dict(cfg))
    assert rebuilt.config == net.config and rebuilt.config.to_dict() == cfg
    assert [(k, tuple(v.shape)) for k, v in rebuilt.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in net.state_dict().items()
    ]
    rebuilt.load_state_dict(net.state_dict())  # checkpoints restore into a config-built net
    assert IterUNet().config.features_per_stage == (16, 32, 64, 128)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"pool_per_stage": [[2, 2, 2]]}, "len(pool_per_stage)"),
        ({"pool_per_stage": [[2, 2], [2, 2, 2]]}, "pool_per_stage[0]"),
        ({"pool_per_stage": [[2, 0, 2], [2, 2, 2]]}, "pool_per_stage[0]"),
        ({"features_per_stage": []}, "features_per_stage"),
        ({"features_per_stage": [4, -8, 16]}, "features_per_stage"),
        ({"in_channels": 0}, "in_channels"),
        ({"in_channels": True}, "in_channels"),
        ({"time_embedding_dim": 7}, "time_embedding_dim"),
        ({"time_scale_s": 0.0}, "time_scale_s"),
        ({"time_scale_s": float("nan")}, "time_scale_s"),
        ({"use_convlstm": "yes"}, "use_convlstm"),
        ({"dropout": 0.1}, "unknown keys ['dropout']"),
    ],
)
def test_bad_config_raises_clear_error(change: dict, fragment: str) -> None:
    cfg = {**tiny_net().config.to_dict(), **change}
    with pytest.raises(ValueError, match=re.escape(fragment)):
        NetworkConfig.from_dict(cfg)


def test_missing_config_key_is_named() -> None:
    cfg = tiny_net().config.to_dict()
    del cfg["time_scale_s"]
    with pytest.raises(ValueError, match="missing keys \\['time_scale_s'\\]"):
        NetworkConfig.from_dict(cfg)


@pytest.mark.parametrize("pools", [ISO, ANISO], ids=["isotropic", "anisotropic"])
def test_output_and_state_shapes(pools) -> None:
    net = tiny_net(pools)
    x = torch.randn(2, 2, 16, 16, 8)
    pred, state = net(x, *times(155.0, 85.0))
    assert pred.shape == (2, 1, 16, 16, 8)
    assert state is not None
    h, c = state
    assert h.shape == c.shape == (2, 4, 16, 16, 8)
    assert h.dtype == c.dtype == torch.float32
    pred2, state2 = net(x, *times(225.0, 155.0), state)
    assert pred2.shape == pred.shape and state2[0].shape == h.shape


def test_bottleneck_resolution_follows_pools() -> None:
    net = tiny_net(ANISO)
    seen = []
    net.encoder[-1].register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    net(torch.randn(1, 2, 16, 16, 8), *times(155.0, 85.0, batch=1))
    assert seen == [(1, 16, 4, 4, 4)]  # x, y pooled by 4, z by 2


def test_input_validation() -> None:
    net = tiny_net(ISO)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 2, 16, 16, 6), *times(155.0, 85.0, batch=1))
    with pytest.raises(ValueError, match="\\[B, 2, X, Y, Z\\]"):
        net(torch.randn(1, 3, 16, 16, 8), *times(155.0, 85.0, batch=1))
    with pytest.raises(ValueError, match="target_time_s"):
        net(torch.randn(2, 2, 16, 16, 8), torch.zeros(3), torch.zeros(2))


def test_fresh_network_returns_current_phase_exactly() -> None:
    net = tiny_net(in_channels=3)
    x = torch.randn(2, 3, 16, 16, 8)
    pred, _ = net(x, *times(155.0, 85.0))
    assert torch.equal(pred, x[:, 2:3])
    assert not torch.equal(pred, x[:, 0:1])


def test_state_is_carried_between_steps() -> None:
    net = tiny_net()
    perturb_output_conv(net)
    x = torch.randn(2, 2, 16, 16, 8)
    _, state = net(x, *times(85.0, 0.0))
    carried, _ = net(x, *times(155.0, 85.0), state)
    reset, _ = net(x, *times(155.0, 85.0), None)
    assert (carried - reset).abs().max() > 1e-4


def test_time_embedding_changes_output() -> None:
    net = tiny_net()
    perturb_output_conv(net)
    x = torch.randn(2, 2, 16, 16, 8)
    a, _ = net(x, *times(155.0, 85.0))
    b, _ = net(x, *times(225.0, 85.0))
    c, _ = net(x, *times(225.0, 155.0))  # same target, different step length
    assert (a - b).abs().max() > 1e-4
    assert (b - c).abs().max() > 1e-4


def test_encoding_resolves_seconds_scale_steps() -> None:
    scale = POSITION_SCALE / 365.0
    enc = sinusoidal_encoding(torch.tensor([85.0, 86.0, 155.0, 365.0]) * scale, 64)
    assert enc.shape == (4, 64)
    assert torch.allclose(enc.norm(dim=1), torch.full((4,), 32.0**0.5))
    assert (enc[0] - enc[1]).norm() > 1.0  # one second apart
    assert (enc[0] - enc[2]).norm() > 2.0  # one 70 s step apart
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(torch.zeros(2), 5)


def test_ablation_flags_remove_components() -> None:
    full = tiny_net()
    no_time = tiny_net(use_time_embedding=False)
    no_lstm = tiny_net(use_convlstm=False)
    names = {n for n, _ in full.named_parameters()}
    assert any(n.startswith("time_embedding.") for n in names)
    assert any(n.startswith("convlstm.") for n in names)
    assert not any(n.startswith("time_embedding.") for n, _ in no_time.named_parameters())
    assert not any(n.startswith("convlstm.") for n, _ in no_lstm.named_parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(no_time) < count(full) and count(no_lstm) < count(full)

    x = torch.randn(2, 2, 16, 16, 8)
    pred, state = no_lstm(x, *times(155.0, 85.0))
    assert state is None and pred.shape == (2, 1, 16, 16, 8)
    perturb_output_conv(no_time)
    a, state = no_time(x, *times(155.0, 85.0))
    b, _ = no_time(x, *times(365.0, 85.0), state)
    assert not torch.equal(a, b)  # the carried state still matters
    c, _ = no_time(x, *times(365.0, 85.0))
    assert torch.equal(a, c)  # times are ignored without the embedding


def test_gradients_reach_every_parameter_through_three_steps() -> None:
    net = tiny_net()
    perturb_output_conv(net)
    pre, current = torch.randn(2, 1, 16, 16, 8), torch.randn(2, 1, 16, 16, 8)
    state = None
    loss = torch.zeros(())
    for source, target in ((85.0, 155.0), (155.0, 225.0), (225.0, 295.0)):
        current, state = net(torch.cat([pre, current], dim=1), *times(target, source), state)
        loss = loss + (current**2).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_bf16_autocast_keeps_state_float32() -> None:
    net = tiny_net()
    perturb_output_conv(net)
    x = torch.randn(1, 2, 16, 16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred, state = net(x, *times(155.0, 85.0, batch=1))
        pred2, state2 = net(torch.cat([x[:, :1], pred], 1), *times(225.0, 155.0, batch=1), state)
    assert state2[0].dtype == state2[1].dtype == torch.float32
    assert pred2.dtype == torch.float32 and torch.isfinite(pred2).all()
    ref, _ = net(x, *times(155.0, 85.0, batch=1))
    assert (pred - ref).abs().max() < 0.1 * ref.abs().max()
