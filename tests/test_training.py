"""Tests for the training stage: synthesizers, trainers, variants, checkpoints, resume, logs and iterdce_train."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from iterdce.commands.train import main as train_main
from iterdce.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from iterdce.network.config import ModelConfig
from iterdce.network.med3d import Med3DWeightsError
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.plans_io import PlansError, load_plans
from iterdce.training.trainer import TRAINERS
from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer
from iterdce.training.variants import (
    NoTeacherWarmupTrainer,
    NoTemporalTrainer,
    NoTemporalWarmupTrainer,
    NoWarmupTrainer,
    SingleStepTrainer,
    get_trainer,
    stages,
)
from tests.helpers import DATASET, first_batch, make_setup

torch.set_num_threads(1)

def assert_same(a, b, where: str = "") -> None:
    """Recursive equality; tensors must be bit-identical."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# ----- synthesizers and unrolling ---------------------------------------------------------------------------
def test_teacher_forcing_and_recursion_differ_once_the_model_is_not_the_identity(preprocessed_root, tmp_path):
    setup = make_setup(preprocessed_root, tmp_path)
    warm, recursive = WarmupTrainer(setup), RecursiveTrainer(setup)
    batch = first_batch(warm)
    data, model = batch["data"], warm.model
    with torch.no_grad():
        teacher, own = warm.unroll(model, batch), recursive.unroll(model, batch)
    assert teacher.shape == own.shape == (2, 4, 16, 16, 8)
    # a fresh model is the identity (zero residual): teacher forcing copies the previous real phase,
    # recursion copies the last input phase into every step
    assert torch.equal(teacher, data[:, 1:5])
    assert torch.equal(own, data[:, 1:2].expand(-1, 4, -1, -1, -1))
    torch.manual_seed(1)
    with torch.no_grad():
        model.net.final_conv.weight.normal_(0.0, 0.5)
        model.net.final_conv.bias.normal_(0.0, 0.5)
        teacher, own = warm.unroll(model, batch), recursive.unroll(model, batch)
    assert torch.equal(teacher[:, 0], own[:, 0])  # the first target step is fed the real last input in both
    for step in range(1, 4):
        assert (teacher[:, step] - own[:, step]).abs().max() > 1e-3, step
    assert not torch.equal(teacher[:, 0], data[:, 1])  # no longer the identity


def test_model_config_round_trip_and_single_step_shapes() -> None:
    network = {"in_channels": 2, "features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 1]],
               "time_embedding_dim": 8, "time_scale_s": 365.0, "use_time_embedding": True, "use_convlstm": True}
    with pytest.raises(ValueError, match="model kind"):
        ModelConfig.from_plan("diffusion", network, [0, 1], 6)
    torch.manual_seed(0)
    single = build_synthesizer(ModelConfig.from_plan("single_step", network, [0, 1], 6))
    assert len(single.nets) == 4
    names = [n for n, _ in single.named_parameters()]
    assert not any("convlstm" in n or "time_embedding" in n for n in names)
    inputs, times = torch.randn(2, 2, 8, 8, 4), torch.tensor([[0.0, 85, 155, 225, 295, 365]] * 2)
    out = single(inputs, times)
    assert out.shape == (2, 4, 8, 8, 4)
    assert torch.equal(out, inputs[:, 1:2].expand(-1, 4, -1, -1, -1))  # fresh nets: the residual is zero
    config = ModelConfig.from_plan("iterative", network, [0, 1], 6)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # survives the JSON round trip
    rebuilt = build_synthesizer(config)
    assert rebuilt(inputs, times).shape == (2, 4, 8, 8, 4)


# ----- training -----------------------------------------------------------------------------------------
def test_thirty_iterations_lower_the_training_loss(preprocessed_root, tmp_path):
    def faster(plans):
        plans["optimizer"]["lr"] = 5e-3

    trainer = WarmupTrainer(make_setup(preprocessed_root, tmp_path, faster, epochs=3, iterations_per_epoch=10,
                                       seed=7))
    trainer.run()
    losses = trainer.log.history["train_loss"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.85 * losses[0], losses
    assert trainer.log.history["lr"][0] == pytest.approx(5e-3)
    assert trainer.log.history["lr"][2] == pytest.approx(5e-3 * (1 / 3) ** 0.9)


def test_resume_after_interrupt_is_bit_identical(preprocessed_root, tmp_path, monkeypatch):
    def noisy(plans):  # every augmentation on, so resumed batches must reproduce every random draw
        plans["augmentation"].update(probability_spatial=1.0, probability_gamma=1.0, probability_noise=1.0,
                                     probability_multiplicative=1.0)
        plans["training"]["validation_every"] = 1

    WarmupTrainer(make_setup(preprocessed_root, tmp_path / "whole", noisy, epochs=3)).run()

    original_save = WarmupTrainer.save

    def save_then_die(self, name):
        original_save(self, name)
        if name == "checkpoint_latest.pth" and self.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(WarmupTrainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        WarmupTrainer(make_setup(preprocessed_root, tmp_path / "cut", noisy, epochs=3)).run()
    monkeypatch.setattr(WarmupTrainer, "save", original_save)
    folder = tmp_path / "cut" / DATASET / "WarmupTrainer__plans" / "fold_0"
    assert not (folder / "checkpoint_final.pth").exists()
    resumed = WarmupTrainer(make_setup(preprocessed_root, tmp_path / "cut", noisy, epochs=3, resume=True))
    resumed.run()
    assert any("resumed from checkpoint_latest.pth at epoch 1" in n for n in resumed.log.notes)

    whole = load_checkpoint(tmp_path / "whole" / DATASET / "WarmupTrainer__plans" / "fold_0" / "checkpoint_final.pth")
    cut = load_checkpoint(folder / "checkpoint_final.pth")
    assert whole["epoch"] == cut["epoch"] == 3
    assert_same(whole["network_state"], cut["network_state"], "network_state")
    assert_same(whole["optimizer_state"], cut["optimizer_state"], "optimizer_state")
    assert whole["log"]["history"] == cut["log"]["history"]


def test_recursive_stage_needs_the_warmup_checkpoint(preprocessed_root, tmp_path):
    setup = make_setup(preprocessed_root, tmp_path)
    with pytest.raises(CheckpointError, match="WarmupTrainer stage has not finished for fold 0") as info:
        RecursiveTrainer(setup).run()
    assert "WarmupTrainer__plans/fold_0/checkpoint_final.pth" in str(info.value)

    warm = WarmupTrainer(make_setup(preprocessed_root, tmp_path, iterations_per_epoch=1))
    warm.run()
    recursive = RecursiveTrainer(setup)
    recursive.initial_weights()
    assert_same(recursive.model.state_dict(), warm.model.state_dict())

    def wider(plans):
        plans["network"]["features_per_stage"] = [6, 8]

    with pytest.raises(CheckpointError, match="does not match"):
        RecursiveTrainer(make_setup(preprocessed_root, tmp_path, wider)).initial_weights()


def test_continue_with_a_different_network_names_the_checkpoint(preprocessed_root, tmp_path):
    WarmupTrainer(make_setup(preprocessed_root, tmp_path, iterations_per_epoch=1)).run()

    def wider(plans):
        plans["network"]["features_per_stage"] = [6, 8]

    resumed = WarmupTrainer(make_setup(preprocessed_root, tmp_path, wider, resume=True, epochs=2))
    with pytest.raises(CheckpointError, match="checkpoint_latest.pth: its network differs"):
        resumed.run()


def test_variants_change_one_thing(preprocessed_root, tmp_path):
    setup = make_setup(preprocessed_root, tmp_path)
    full = {n for n, _ in WarmupTrainer(setup).model.named_parameters()}
    assert any("convlstm" in n for n in full) and any("time_embedding" in n for n in full)
    plain = {n for n, _ in NoTemporalTrainer(setup).model.named_parameters()}
    assert plain and not any("convlstm" in n or "time_embedding" in n for n in plain)
    assert stages("NoTemporalTrainer") == [NoTemporalWarmupTrainer, NoTemporalTrainer]
    assert stages("RecursiveTrainer") == [WarmupTrainer, RecursiveTrainer]
    assert stages("NoWarmupTrainer") == [NoTeacherWarmupTrainer, NoWarmupTrainer]
    assert stages("SingleStepTrainer") == [SingleStepTrainer]
    budget = make_setup(preprocessed_root, tmp_path, epochs=None)
    training = load_plans(preprocessed_root / DATASET / "plans.json").training
    assert SingleStepTrainer(budget).total_epochs == training.warmup_epochs + training.recursive_epochs
    assert RecursiveTrainer(budget).total_epochs == training.recursive_epochs
    with pytest.raises(ValueError, match="unknown trainer 'Foo'.*WarmupTrainer"):
        get_trainer("Foo")


def test_no_warmup_differs_from_recursive_only_in_the_warmup(preprocessed_root, tmp_path):
    setup = make_setup(preprocessed_root, tmp_path, epochs=None)
    full = [cls(setup).stage_config() for cls in stages("RecursiveTrainer")]
    ablation = [cls(setup).stage_config() for cls in stages("NoWarmupTrainer")]
    assert len(full) == len(ablation) == 2
    differing = [(stage, key) for stage, (a, b) in enumerate(zip(full, ablation)) for key in a if a[key] != b[key]]
    assert differing == [(0, "teacher_forcing")]
    assert full[0]["teacher_forcing"] and not ablation[0]["teacher_forcing"]


def test_a_variant_is_one_class_with_its_own_name_and_folder(preprocessed_root, tmp_path):
    class UnnamedVariantTrainer(RecursiveTrainer):  # forgets to set ``name``
        lr_from = "lr"

    try:
        assert get_trainer("UnnamedVariantTrainer") is UnnamedVariantTrainer
        trainer = UnnamedVariantTrainer(make_setup(preprocessed_root, tmp_path))
        assert trainer.output == tmp_path / DATASET / "UnnamedVariantTrainer__plans" / "fold_0"
        assert stages("UnnamedVariantTrainer") == [WarmupTrainer, UnnamedVariantTrainer]
    finally:
        TRAINERS.pop("UnnamedVariantTrainer")


def test_single_step_trainer_trains_and_checkpoints_its_kind(preprocessed_root, tmp_path):
    trainer = SingleStepTrainer(make_setup(preprocessed_root, tmp_path))
    before = copy.deepcopy(trainer.model.state_dict())
    folder = trainer.run()
    assert folder == tmp_path / DATASET / "SingleStepTrainer__plans" / "fold_0"
    payload = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert payload["model_config"]["kind"] == "single_step" and payload["trainer"] == "SingleStepTrainer"
    changed = [k for k, v in payload["network_state"].items() if not torch.equal(v, before[k])]
    assert any(k.startswith("nets.3.") for k in changed)  # every per-phase net is trained
    model = build_synthesizer(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["network_state"])


def strict_json(path: Path) -> dict:
    """Parse as standard JSON: NaN / Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_checkpoints_logs_and_plot_are_written_and_load_safely(preprocessed_root, tmp_path):
    trainer = WarmupTrainer(make_setup(preprocessed_root, tmp_path, epochs=2, iterations_per_epoch=1))
    trainer.output.mkdir(parents=True)
    trainer.write_log()  # before any validation there is no best score yet
    assert strict_json(trainer.output / "training_log.json")["best_val_enhancement_error"] is None
    folder = trainer.run()
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        payload = torch.load(folder / name, map_location="cpu", weights_only=True)
        assert payload["model_config"]["kind"] == "iterative" and payload["fold"] == "0"
    final = load_checkpoint(folder / "checkpoint_final.pth")
    assert final["epoch"] == 2 and final["total_epochs"] == 2 and final["iterations_per_epoch"] == 1
    log = strict_json(folder / "training_log.json")
    assert log["trainer"] == "WarmupTrainer" and log["history"]["epoch"] == [1, 2]
    history = log["history"]
    assert len(history["train_loss"]) == 2
    assert history["val_loss"][0] is None and history["val_loss"][1] > 0  # the tiny plan validates every 2nd epoch
    assert log["best_val_enhancement_error"] == pytest.approx(history["val_enhancement_error"][1])
    assert any("perceptual term DISABLED" in n for n in log["notes"])  # Med3D off without weights, and logged
    assert (folder / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.glob("*.tmp*"))

    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth: cannot be read"):
        load_checkpoint(broken)
    save_checkpoint(tmp_path / "other.pth", {"weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="other.pth: not an iterdce checkpoint"):
        load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="missing.pth: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_fold_all_trains_on_every_case(preprocessed_root, tmp_path):
    setup = make_setup(preprocessed_root, tmp_path, fold="all")
    train, val = setup.fold_cases()
    assert train == val == [f"case_{i:03d}" for i in range(6)]
    assert setup.output_folder("WarmupTrainer") == tmp_path / DATASET / "WarmupTrainer__plans" / "fold_all"
    with pytest.raises(ValueError, match="fold 7 does not exist"):
        make_setup(preprocessed_root, tmp_path, fold=7).fold_cases()


def test_med3d_weights_come_from_the_plan_or_the_environment(preprocessed_root, tmp_path, monkeypatch):
    from iterdce.network.med3d import ResNet10

    weights = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ResNet10().state_dict().items()}}, weights)
    monkeypatch.delenv("ITERDCE_MED3D_WEIGHTS", raising=False)
    assert not WarmupTrainer(make_setup(preprocessed_root, tmp_path)).loss.perceptual_enabled

    def with_weights(path):
        return lambda plans: plans["perceptual"].update(med3d_weights=str(path))

    trainer = WarmupTrainer(make_setup(preprocessed_root, tmp_path, with_weights(weights)))
    assert trainer.loss.perceptual_enabled and str(weights) in trainer.loss.describe()
    monkeypatch.setenv("ITERDCE_MED3D_WEIGHTS", str(weights))
    assert WarmupTrainer(make_setup(preprocessed_root, tmp_path)).loss.perceptual_enabled
    with pytest.raises(Med3DWeightsError, match="absent.pth does not exist"):
        WarmupTrainer(make_setup(preprocessed_root, tmp_path, with_weights(tmp_path / "absent.pth")))


# ----- the command line ---------------------------------------------------------------------------------
def cli(preprocessed_root: Path, results: Path, *extra: str) -> int:
    return train_main(["0", "-d", "1", "--device", "cpu", "-np", "0", "--iterations-per-epoch", "2",
                       "--preprocessed", str(preprocessed_root), "--results", str(results), *extra])


def test_cli_trains_both_stages_and_continues(preprocessed_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert cli(preprocessed_root, results, "--epochs", "1", "-tr", "WarmupTrainer") == 0
    warm = results / DATASET / "WarmupTrainer__plans" / "fold_0"
    assert (warm / "checkpoint_final.pth").is_file()
    assert (warm / "validation" / "summary.json").is_file()  # the fold's validation cases are scored at the end
    assert (warm.parent / "plans.json").is_file()  # the model folder carries its plan
    assert not (results / DATASET / "RecursiveTrainer__plans").exists()

    # default -tr RecursiveTrainer: with --continue the finished warm-up is kept, then the recursive stage runs
    assert cli(preprocessed_root, results, "--epochs", "1", "--continue", "--no-validation") == 0
    recursive = results / DATASET / "RecursiveTrainer__plans" / "fold_0"
    assert load_checkpoint(recursive / "checkpoint_final.pth")["epoch"] == 1
    out = capsys.readouterr().out
    assert "WarmupTrainer: already finished (1 epochs)" in out and "done: " in out
    # --continue without a checkpoint (as nnU-Net) starts from scratch, and says where it looked
    assert f"RecursiveTrainer: --continue found no checkpoint_latest.pth in {recursive}; starting from scratch" in out
    assert any("initialised from" in n and "WarmupTrainer__plans" in n
               for n in json.loads((recursive / "training_log.json").read_text())["notes"])

    assert cli(preprocessed_root, results, "--epochs", "2", "--continue", "--no-validation") == 0
    for folder in (warm, recursive):
        final = load_checkpoint(folder / "checkpoint_final.pth")
        assert final["epoch"] == final["total_epochs"] == 2
        assert json.loads((folder / "training_log.json").read_text())["history"]["epoch"] == [1, 2]


def test_cli_reports_a_missing_fold_or_dataset(preprocessed_root, tmp_path, capsys):
    code = train_main(["7", "-d", "1", "--device", "cpu", "--preprocessed", str(preprocessed_root),
                       "--results", str(tmp_path)])
    assert code != 0
    assert "fold 7 does not exist" in capsys.readouterr().err
    assert train_main(["0", "-d", "9", "--device", "cpu", "--preprocessed", str(preprocessed_root),
                       "--results", str(tmp_path)]) != 0
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["seven"])


def test_a_plan_missing_a_nested_key_fails_before_any_training(preprocessed_root, tmp_path, capsys):
    plans = load_plans(preprocessed_root / DATASET / "plans.json").to_dict()
    del plans["optimizer"]["recursive_lr"]
    with pytest.raises(PlansError, match="missing key optimizer.recursive_lr"):
        make_setup(preprocessed_root, tmp_path, lambda p: p["optimizer"].pop("recursive_lr"))
    broken = preprocessed_root / DATASET / "broken.json"
    broken.write_text(json.dumps(plans))
    try:
        code = cli(preprocessed_root, tmp_path / "results", "-p", "broken", "--epochs", "1")
    finally:
        broken.unlink()
    assert code == 1
    assert f"{broken}: missing key optimizer.recursive_lr" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # nothing trained, nothing written

