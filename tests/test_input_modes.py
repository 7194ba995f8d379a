"""How three or more inputs reach the network: the ConvLSTM's warm-up steps (``sequence``, the default) or every
step's channels (``channels``, InputChannelsTrainer): the model config, the synthesizer and the trainer."""
from __future__ import annotations

import pytest
import torch

from iterdce.core.checkpoint import load_checkpoint
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.training.variants import InputChannelsTrainer, InputChannelsWarmupTrainer, stages
from tests.helpers import make_setup

torch.set_num_threads(1)
NETWORK = {"features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 2]], "time_embedding_dim": 8,
           "time_scale_s": 400.0, "use_time_embedding": True, "use_convlstm": True, "kinetic_prior": False}
TIMES = torch.tensor([[0.0, 30.0, 60.0, 120.0, 220.0, 320.0]])


def three_input_model(mode: str, prior: bool = False) -> torch.nn.Module:
    config = ModelConfig.from_plan("iterative", {**NETWORK, "kinetic_prior": prior, "input_mode": mode},
                                   [0, 1, 2], 6)
    return build_synthesizer(config)


def randomize(model: torch.nn.Module) -> None:
    """Weights away from the fresh model's zero residual, so every channel can change the output."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


@pytest.mark.parametrize("prior", [False, True])
def test_channels_mode_reads_every_input_and_starts_at_the_last(prior):
    model = three_input_model("channels", prior)
    assert model.net.config.in_channels == 3 + 1 + int(prior)  # pre, phases 1 and 2, current (+ prior)
    calls = []
    model.net.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[1]))
    inputs = torch.rand(1, 3, 8, 8, 8)
    with torch.no_grad():
        fresh = model(inputs, TIMES)
    assert fresh.shape == (1, 3, 8, 8, 8) and len(calls) == 3  # one step per target, no warm-up steps
    if not prior:  # a fresh model adds no change: every target is the last input
        assert torch.equal(fresh, inputs[:, 2:3].expand(-1, 3, -1, -1, -1))
    randomize(model)
    changed = inputs.clone()
    changed[:, 1] += 1.0  # the first post-contrast phase: only a channel of the first step reads it
    with torch.no_grad():
        assert not torch.allclose(model(inputs, TIMES), model(changed, TIMES))


def test_sequence_mode_is_unchanged_by_the_option():
    default = build_synthesizer(ModelConfig.from_plan("iterative", NETWORK, [0, 1, 2], 6))
    sequence = three_input_model("sequence")
    assert default.input_mode == sequence.input_mode == "sequence"
    assert sequence.net.config.in_channels == 2
    sequence.load_state_dict(default.state_dict())
    randomize(default)
    sequence.load_state_dict(default.state_dict())
    inputs = torch.rand(1, 3, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(default(inputs, TIMES), sequence(inputs, TIMES))


def test_model_config_records_the_input_mode_and_reads_headers_without_it():
    config = ModelConfig.from_plan("iterative", {**NETWORK, "input_mode": "channels"}, [0, 1, 2], 6)
    header = config.to_dict()
    assert header["input_mode"] == "channels" and ModelConfig.from_dict(header) == config
    older = ModelConfig.from_plan("iterative", NETWORK, [0, 1], 6).to_dict()
    del older["input_mode"]  # a checkpoint saved before the option existed
    assert ModelConfig.from_dict(older).input_mode == "sequence"
    with pytest.raises(ValueError, match="input_mode must be one of"):
        ModelConfig.from_dict({**header, "input_mode": "stack"})
    with pytest.raises(ValueError, match="input_mode 'channels' is the iterative model's"):
        ModelConfig.from_plan("single_step", {**NETWORK, "input_mode": "channels"}, [0, 1, 2], 6)
    with pytest.raises(ValueError, match="feeds 4 channels per step, got in_channels 2"):
        ModelConfig.from_dict({**header, "network": {**header["network"], "in_channels": 2}})


def test_input_channels_trainer_trains_and_its_checkpoint_rebuilds_the_model(preprocessed_root, tmp_path):
    assert stages("InputChannelsTrainer") == [InputChannelsWarmupTrainer, InputChannelsTrainer]
    setup = make_setup(preprocessed_root, tmp_path, iterations_per_epoch=1)
    InputChannelsWarmupTrainer(setup).run()
    trainer = InputChannelsTrainer(setup)
    trainer.run()
    assert trainer.config.input_mode == "channels"
    payload = load_checkpoint(trainer.output / "checkpoint_final.pth")
    rebuilt = build_synthesizer(ModelConfig.from_dict(payload["model_config"]))
    assert rebuilt.input_mode == "channels"
    rebuilt.load_state_dict(payload["network_state"])
