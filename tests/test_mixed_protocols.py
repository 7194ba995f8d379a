"""Mixed protocols in one dataset: cases of 4, 5 and 6 phases are planned, batched and trained together, and
the loss comes only from the phases each case has."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.case_files import load_preprocessed
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.preprocessing.plans_io import load_plans, save_plans
from iterdce.training.data_loader import PatchSampler, pad_phases
from iterdce.training.trainer_recursive import RecursiveTrainer, WarmupTrainer
from tests.helpers import DATASET, make_raw_dataset, make_setup

torch.set_num_threads(1)
FOUR = [0.0, 90.0, 190.0, 290.0]
FIVE = [0.0, 75.0, 155.0, 235.0, 315.0]


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 cases of 24x24x8: case_001 and case_004 with 4 phases, case_002 with 5, the rest dataset.json's 6."""
    root = tmp_path_factory.mktemp("mixed")
    raw = make_raw_dataset(root / "raw", n_cases=6, shape=(24, 24, 8), n_phases=6,
                           case_times={"case_001": FOUR, "case_002": FIVE, "case_004": FOUR})
    preprocessed = root / "preprocessed"
    plan_and_preprocess(raw, preprocessed, num_processes=1, preset="tiny", progress=False, log=lambda *a: None)
    path = preprocessed / DATASET / "plans.json"
    plans = load_plans(path).to_dict()
    plans["network"].update(features_per_stage=[4, 8], pool_per_stage=[[2, 2, 1]], time_embedding_dim=8)
    plans.update(patch_size=[16, 16, 8], batch_size=4)
    save_plans(plans, path)
    return preprocessed


def mixed_batch(trainer, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch holding a 4-phase and a 6-phase case (lesion-centred + random patch of each)."""
    sampler = PatchSampler(trainer.setup.data_dir, ["case_001", "case_000"], trainer.plans.patch_size, 4, None,
                           seed=seed)
    for index in range(50):
        batch = sampler.batch(index)
        if sorted(batch["valid"].sum(axis=1).tolist()) == [4.0, 4.0, 6.0, 6.0]:
            return {k: torch.from_numpy(v) for k, v in batch.items() if k != "lesion_centred"}
    raise AssertionError("no batch with both cases in 50 draws")


def test_pad_phases_repeats_the_last_phase_and_continues_the_times() -> None:
    short, long = np.ones((4, 2, 2, 2), np.float32), np.zeros((6, 2, 2, 2), np.float32)
    data, times, valid = pad_phases([short, long], [np.array(FOUR), np.array([0, 85, 155, 225, 295, 365.0])])
    assert data.shape == (2, 6, 2, 2, 2) and np.array_equal(data[0, 4:], np.ones((2, 2, 2, 2)))
    assert times[0].tolist() == FOUR + [390.0, 490.0]
    assert valid.tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]


def test_plan_and_preprocessed_cases_keep_each_protocol(mixed_root: Path) -> None:
    plans = load_plans(mixed_root / DATASET / "plans.json")
    assert plans.max_phases == 6 and plans.target_times_s == (155.0, 225.0, 295.0, 365.0)
    assert plans.trained_target_times_s == (155.0, 365.0)
    data_dir = mixed_root / DATASET / "plans_data"
    assert load_preprocessed(data_dir, "case_001").times_s.tolist() == FOUR
    assert load_preprocessed(data_dir, "case_002").data.shape[0] == 5


@pytest.mark.parametrize("trainer_class", [WarmupTrainer, RecursiveTrainer])
def test_four_and_six_phase_cases_train_in_one_batch(mixed_root: Path, tmp_path: Path, trainer_class) -> None:
    """Same batch: the loss is finite, equals the mean over the phases present, and the padding (the invented
    phases 4 and 5 of the 4-phase case) gives no gradient at all."""
    trainer = trainer_class(make_setup(mixed_root, tmp_path, fold="all"))
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # not the identity, so every step depends on what it is fed
        model.net.final_conv.weight.normal_(0.0, 0.3)
    batch = mixed_batch(trainer)
    n_in = len(trainer.plans.input_phases)

    def loss_and_grads(b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = trainer.step_loss(trainer.unroll(model, b), b["data"][:, n_in:], b)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss, grads = loss_and_grads(batch)
    assert torch.isfinite(loss)
    changed = {k: v.clone() for k, v in batch.items()}
    short = changed["valid"][:, -1] == 0
    changed["data"][short, 4:] = torch.randn_like(changed["data"][short, 4:]) * 100.0
    changed["times"][short, 4:] = torch.tensor([1000.0, 5000.0])
    changed_loss, changed_grads = loss_and_grads(changed)
    assert torch.equal(loss, changed_loss)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(grads, changed_grads))
    # the loss is the mean over (case, present target phase), each case unrolled on its own to its last phase
    total, count = 0.0, 0
    with torch.no_grad():
        for row in range(len(batch["data"])):
            own = int(batch["valid"][row].sum())
            alone = {"data": batch["data"][row:row + 1, :own], "times": batch["times"][row:row + 1, :own],
                     "mask": batch["mask"][row:row + 1], "lesion": batch["lesion"][row:row + 1]}
            predictions = trainer.unroll(model, alone)
            assert predictions.shape[1] == own - n_in
            total += float(trainer.step_loss(predictions, alone["data"][:, n_in:], alone)) * (own - n_in)
            count += own - n_in
    assert float(loss) == pytest.approx(total / count, rel=1e-5)


def test_a_mixed_batch_stream_trains_and_validates(mixed_root: Path, tmp_path: Path) -> None:
    trainer = WarmupTrainer(make_setup(mixed_root, tmp_path, fold=0, iterations_per_epoch=3))
    trainer.run()
    history = trainer.log.history
    assert np.isfinite(history["train_loss"][-1]) and np.isfinite(history["val_loss"][-1])


def test_the_synthesizers_unroll_to_the_times_given() -> None:
    network = {"in_channels": 2, "features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 1]],
               "time_embedding_dim": 8, "time_scale_s": 365.0, "use_time_embedding": True, "use_convlstm": True}
    inputs = torch.randn(1, 2, 8, 8, 4)
    for kind in ("iterative", "single_step"):
        model = build_synthesizer(ModelConfig.from_plan(kind, network, [0, 1], 6))
        for n_times in (3, 4, 6):
            times = torch.linspace(0.0, 300.0, n_times)[None]
            assert model(inputs, times).shape == (1, n_times - 2, 8, 8, 4)
    with pytest.raises(ValueError, match="up to 6 phases, asked for 7"):
        model(inputs, torch.linspace(0.0, 300.0, 7)[None])


def test_mixed_protocols_end_to_end(tmp_path: Path, capsys) -> None:
    """iterdce_simulate --protocols mixed -> plan -> train (tiny, a few iterations) -> predict at each case's own
    times and at requested times -> evaluate, with 4-, 5- and 6-phase cases throughout."""
    from iterdce.commands.evaluate import main as evaluate_main
    from iterdce.commands.plan_and_preprocess import main as plan_main
    from iterdce.commands.predict import main as predict_main
    from iterdce.commands.simulate import main as simulate_main
    from iterdce.commands.train import main as train_main

    roots = ["--raw", str(tmp_path / "raw"), "--preprocessed", str(tmp_path / "pre"),
             "--results", str(tmp_path / "results")]
    raw = tmp_path / "raw" / "Dataset007_Mixed"
    assert simulate_main(["-o", str(raw), "-n", "6", "--shape", "32", "32", "16", "--protocols", "mixed",
                          "--quiet"]) == 0
    lengths = sorted(len(json.loads(p.read_text())["phase_times_s"]) for p in (raw / "timesTr").iterdir())
    assert lengths == [4, 4, 5, 5, 6, 6]
    assert plan_main(["-d", "7", "--preset", "tiny", "-np", "1", "--quiet", *roots]) == 0
    assert "protocols         4 phases: 2 case(s)" in capsys.readouterr().out
    assert train_main(["all", "-d", "7", "-tr", "WarmupTrainer", "--epochs", "1", "--iterations-per-epoch", "2",
                       "--device", "cpu", "-np", "0", "--quiet", *roots]) == 0
    validation = tmp_path / "results" / "Dataset007_Mixed" / "WarmupTrainer__plans" / "fold_all" / "validation"
    scored = pd.read_csv(validation / "per_case.csv")
    assert sorted(scored.groupby("case")["phase"].max().tolist()) == [3, 3, 4, 4, 5, 5]  # every case's own last
    inputs = tmp_path / "early"
    inputs.mkdir()
    for case in sorted({p.name[:-12] for p in (raw / "imagesTr").glob("*_0000.nii.gz")}):
        for phase in (0, 1):
            shutil.copy(raw / "imagesTr" / f"{case}_{phase:04d}.nii.gz", inputs)
        shutil.copy(raw / "timesTr" / f"{case}.json", inputs)
    common = ["-d", "7", "-tr", "WarmupTrainer", "-f", "all", "--device", "cpu", "--quiet", *roots]
    assert predict_main(["-i", str(inputs), "-o", str(tmp_path / "own"), *common]) == 0
    assert len(list((tmp_path / "own").glob("*.nii.gz"))) == 2 * (2 + 3 + 4)
    assert predict_main(["-i", str(inputs), "-o", str(tmp_path / "asked"), "--target-times", "155", "225", "295",
                         "365", *common]) == 0
    assert len(list((tmp_path / "asked").glob("*.nii.gz"))) == 6 * 4
    labels = ["-l", str(raw / "labelsTr"), "-r", str(raw / "imagesTr")]
    assert evaluate_main(["--pred", str(tmp_path / "own"), "-o", str(tmp_path / "report_own"), *labels]) == 0
    own = pd.read_csv(tmp_path / "report_own" / "per_case.csv")
    assert len(own[own["method"] == "iterdce"]) == 2 * (2 + 3 + 4) and own["psnr"].notna().all()
    capsys.readouterr()
    assert evaluate_main(["--pred", str(tmp_path / "asked"), "-o", str(tmp_path / "report_asked"), *labels]) == 0
    asked = pd.read_csv(tmp_path / "report_asked" / "per_case.csv")
    network = asked[asked["method"] == "iterdce"]
    # only the 6-phase cases were acquired at 155-365 s; the others are reported as not scored
    assert sorted(network["time_s"].unique().tolist()) == [155.0, 225.0, 295.0, 365.0] and len(network) == 8
    assert "4 case(s) not scored" in capsys.readouterr().out


def test_one_protocol_batches_keep_the_loss_they_had(mixed_root: Path, tmp_path: Path) -> None:
    """All phases present: the one-call loss is the mean over targets of each target's loss over the batch (the
    loss before mixed protocols), with the foreground mask and the lesion term on as in the cpu preset."""
    def foreground_and_lesion(plans: dict) -> None:
        plans["training"]["loss_mask"] = "foreground"
        plans["loss_weights"].update(l1=1.0, lesion_l1=1.0)

    trainer = WarmupTrainer(make_setup(mixed_root, tmp_path, plans_change=foreground_and_lesion, fold="all"))
    sampler = PatchSampler(trainer.setup.data_dir, ["case_000", "case_003"], trainer.plans.patch_size, 4, None, seed=1)
    batch = {k: torch.from_numpy(v) for k, v in sampler.batch(0).items() if k != "lesion_centred"}
    assert bool(batch["valid"].all()) and bool(batch["lesion"].any())
    predictions = batch["data"][:, 2:] + 0.1 * torch.randn_like(batch["data"][:, 2:])
    target = batch["data"][:, 2:]
    before = torch.stack([trainer.loss(predictions[:, t:t + 1], target[:, t:t + 1], batch["mask"], batch["lesion"])[0]
                          for t in range(target.shape[1])]).mean()
    assert float(trainer.step_loss(predictions, target, batch)) == pytest.approx(float(before), rel=1e-5)
