"""Starting from a trained model (--pretrained-weights) and the loss options of the fidelity ablation
(lesion L1, loss inside the body foreground)."""
from __future__ import annotations

import pytest
import torch

from iterdce.commands.train import build_parser
from iterdce.core.checkpoint import CheckpointError, load_checkpoint
from iterdce.losses.synthesis import DEFAULT_LOSS_WEIGHTS, SynthesisLoss
from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer
from iterdce.training.variants import NoTeacherWarmupTrainer
from tests.helpers import first_batch, make_setup

torch.set_num_threads(1)


def test_pretrained_weights_initialise_the_first_stage_only(preprocessed_root, tmp_path):
    source = WarmupTrainer(make_setup(preprocessed_root, tmp_path / "source"))
    source.run()
    checkpoint = source.output / "checkpoint_final.pth"
    trained = load_checkpoint(checkpoint)["network_state"]
    for cls in (WarmupTrainer, NoTeacherWarmupTrainer):  # the first stage of RecursiveTrainer, NoWarmupTrainer
        trainer = cls(make_setup(preprocessed_root, tmp_path / cls.name, seed=99, pretrained_weights=checkpoint))
        trainer.initial_weights()
        state = trainer.model.state_dict()
        assert all(torch.equal(state[k], trained[k]) for k in trained), cls.name
        assert any("pretrained weights" in note for note in trainer.log.notes)
    # the recursive stage still starts from its own warm-up, not from the pretrained file
    setup = make_setup(preprocessed_root, tmp_path / "fine", seed=99, pretrained_weights=checkpoint)
    warm = WarmupTrainer(setup)
    warm.run()
    recursive = RecursiveTrainer(setup)
    recursive.initial_weights()
    warm_state = load_checkpoint(warm.output / "checkpoint_final.pth")["network_state"]
    assert all(torch.equal(recursive.model.state_dict()[k], warm_state[k]) for k in warm_state)


def test_pretrained_weights_of_another_network_name_the_file_and_layers(preprocessed_root, tmp_path):
    source = WarmupTrainer(make_setup(preprocessed_root, tmp_path / "source"))
    source.run()
    checkpoint = source.output / "checkpoint_final.pth"

    def wider(plans):
        plans["network"]["features_per_stage"] = [6, 8]

    trainer = WarmupTrainer(make_setup(preprocessed_root, tmp_path / "other", wider, pretrained_weights=checkpoint))
    with pytest.raises(CheckpointError, match=r"checkpoint_final\.pth.*shape \(checkpoint vs this network\)"):
        trainer.initial_weights()


def test_train_command_accepts_pretrained_weights(tmp_path):
    args = build_parser().parse_args(["0", "-d", "1", "--pretrained-weights", str(tmp_path / "model.pth")])
    assert args.pretrained_weights == tmp_path / "model.pth"


def test_lesion_l1_is_the_error_over_lesion_voxels_and_off_by_default():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 1, 8, 8, 4), torch.randn(2, 1, 8, 8, 4)
    lesion = torch.zeros_like(pred)
    lesion[:, :, 2:4, 2:4, 1:3] = 1
    _, terms = SynthesisLoss(DEFAULT_LOSS_WEIGHTS | {"perceptual": 0.0}, 4.0)(pred, target, lesion=lesion)
    assert "lesion_l1" not in terms  # weight 0: the paper's loss
    loss = SynthesisLoss(DEFAULT_LOSS_WEIGHTS | {"perceptual": 0.0, "lesion_l1": 2.0}, 4.0)
    total, terms = loss(pred, target, lesion=lesion)
    expected = (pred - target).abs()[lesion > 0].mean()
    assert torch.allclose(terms["lesion_l1"], expected)
    assert "2.0*lesion_l1" in loss.describe() and "lesion_l1" not in SynthesisLoss(DEFAULT_LOSS_WEIGHTS, 4.0).describe()
    weights_without = {k: v for k, v in DEFAULT_LOSS_WEIGHTS.items() if k != "lesion_l1"}
    assert SynthesisLoss(weights_without, 4.0).weights["lesion_l1"] == 0.0  # older plans keep the paper's loss


def test_foreground_loss_mask_ignores_voxels_away_from_the_body(preprocessed_root, tmp_path):
    def foreground(plans):
        plans["training"]["loss_mask"] = "foreground"

    for change, should_change in ((foreground, False), (None, True)):
        trainer = WarmupTrainer(make_setup(preprocessed_root, tmp_path / str(should_change), change))
        batch = first_batch(trainer)
        batch["mask"] = torch.zeros_like(batch["mask"])
        batch["mask"][..., :8, :, :] = 1
        target = batch["data"][:, 2:].clone()
        predictions = target + 0.1
        before = trainer.step_loss(predictions, target, batch)
        # outside the mask and beyond the SSIM window's reach (radius 5) from it
        predictions[..., 13:, :, :] += 5.0
        after = trainer.step_loss(predictions, target, batch)
        assert bool(before != after) == should_change
