"""Data and model files of the cross-site benchmark (benchmarks/cross_site.py): site datasets, their merge,
the prediction input folder, and trained models as flat weight files."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from iterdce.core.file_names import CHECKPOINT_FINAL, case_file_name, phase_file_name, sidecar_name
from iterdce.core.folder_names import FOLD_ALL, IMAGES_TR, LABELS_TR, TIMES_TR, dataset_folder_name, fold_folder

if TYPE_CHECKING:
    from iterdce.preprocessing.plan_schema import Plans
    from iterdce.simulation.sites import SiteProfile


def simulate_sites(raw_root: Path, sites: Sequence[str | SiteProfile], cases_per_site: list[int], shape: list[int],
                   seed: int, jobs: int, early_frames: int = 0) -> list[Path]:
    """One raw dataset per site, a built-in name or a profile (skipped when it exists, if simulated with the same
    ``early_frames``)."""
    from iterdce.simulation import simulate_dataset
    from iterdce.simulation.lesions import LesionPlacementError

    folders = []
    for index, (site, n) in enumerate(zip(sites, cases_per_site)):
        folder = raw_root / dataset_folder_name(900 + index, f"Site{site if isinstance(site, str) else site.name}")
        if n == 0:  # skipped (e.g. the test site of a --train-only run); seeds of the others unchanged
            folders.append(folder)
            continue
        for attempt in range(5):  # a draw whose lesion does not fit its breast: take the next seed
            if (folder / "dataset.json").is_file():
                check_early_frames(folder, early_frames)
                break
            try:
                simulate_dataset(folder, n, shape=shape, seed=seed + 1000 * index + attempt, jobs=jobs, site=site,
                                 overwrite=True, early_frames=early_frames)
            except LesionPlacementError as exc:
                print(f"site {site}, seed {seed + 1000 * index + attempt}: {exc}; next seed", flush=True)
        folders.append(folder)
    return folders


def check_early_frames(folder: Path, early_frames: int) -> None:
    """Refuse to reuse a site dataset simulated with another number of early frames (a workdir of another run)."""
    found = json.loads((folder / "dataset.json").read_text()).get("simulation", {}).get("early_frames", 0)
    if found != early_frames:
        raise SystemExit(f"{folder}: simulated with {found} early frames, asked for {early_frames}; use another "
                         "--workdir")


def merge_sites(site_dirs: list[Path], out_dir: Path, input_phases: int = 2) -> Path:
    """A raw dataset holding every case of ``site_dirs`` (symbolic links; case ids prefixed by the site) whose
    first ``input_phases`` phases are the model's inputs."""
    wanted = list(range(input_phases))
    if (out_dir / "dataset.json").is_file():
        found = json.loads((out_dir / "dataset.json").read_text()).get("input_phases", [0, 1])
        if found != wanted:
            raise SystemExit(f"{out_dir}: merged earlier with input phases {found}, asked for {wanted}; use another "
                             "--workdir")
        return out_dir
    import pandas as pd

    from iterdce.dataset.layout import discover_cases

    for sub in (IMAGES_TR, LABELS_TR, TIMES_TR):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    tables, total = [], 0
    for site_dir in site_dirs:
        prefix = site_dir.name.split("_", 1)[1].lower()
        for case_id, files in discover_cases(site_dir).cases.items():
            new = f"{prefix}_{case_id}"
            for phase, path in files.phase_files.items():
                (out_dir / IMAGES_TR / phase_file_name(new, phase)).symlink_to(path.resolve())
            if files.label is not None:
                (out_dir / LABELS_TR / case_file_name(new)).symlink_to(files.label.resolve())
            if files.times is not None:
                (out_dir / TIMES_TR / sidecar_name(new)).symlink_to(files.times.resolve())
            total += 1
        if (site_dir / "cases.csv").is_file():
            table = pd.read_csv(site_dir / "cases.csv")
            table["case"] = prefix + "_" + table["case"].astype(str)
            tables.append(table)
    if tables:
        pd.concat(tables, ignore_index=True).to_csv(out_dir / "cases.csv", index=False)
    info = json.loads((site_dirs[0] / "dataset.json").read_text())
    info.update(name=out_dir.name.split("_", 1)[1], numTraining=total, input_phases=wanted)
    info.pop("simulation", None)
    (out_dir / "dataset.json").write_text(json.dumps(info, indent=2))
    return out_dir


def input_folder(test_dir: Path, out_dir: Path, input_phases: list[int]) -> Path:
    """What a user hands the predictor: the input phases and each case's timing sidecar (links)."""
    from iterdce.dataset.layout import discover_cases

    if out_dir.is_dir():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    for case_id, files in discover_cases(test_dir).cases.items():
        for phase in input_phases:
            link = tmp / phase_file_name(case_id, phase)
            if not link.exists():
                link.symlink_to(files.phase_files[phase].resolve())
        if files.times is not None and not (tmp / f"{case_id}.json").exists():
            (tmp / f"{case_id}.json").symlink_to(files.times.resolve())
    tmp.rename(out_dir)
    return out_dir


def real_target_folder(test_dir: Path, out_dir: Path, n_inputs: int) -> Path:
    """Links to a site's real target phases (every phase after the inputs): a stand-in prediction folder, so that
    an evaluation scores only the baselines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted((test_dir / IMAGES_TR).glob("*.nii.gz")):
        if int(path.name[-11:-7]) >= n_inputs and not (out_dir / path.name).exists():
            (out_dir / path.name).symlink_to(path.resolve())
    return out_dir


def prepare_training_set(site_dirs: list[Path], raw_root: Path, preprocessed: Path, name: str, preset: str,
                         jobs: int, plan_from: Path | None = None, input_phases: int = 2
                         ) -> tuple[Path, dict, list[str]]:
    """Merge the sites into one raw dataset and preprocess it (with ``plan_from``'s plan when given, as a
    user fine-tuning a model does, made this dataset's own by ``adopt_plan``); returns the preprocessed folder,
    the plan and all case ids."""
    import shutil

    from iterdce.preprocessing.pipeline import plan_and_preprocess
    from iterdce.preprocessing.splits import SPLITS_FILE

    raw = merge_sites(site_dirs, raw_root / name, input_phases)
    if plan_from is not None:
        (preprocessed / raw.name).mkdir(parents=True, exist_ok=True)
        if not (preprocessed / raw.name / "plans.json").is_file():
            shutil.copyfile(plan_from, preprocessed / raw.name / "plans.json")
    plans = plan_and_preprocess(raw, preprocessed, num_processes=jobs, preset=preset, progress=False,
                                log=lambda *_: None)
    if plan_from is not None:
        plans = adopt_plan(plans, preprocessed / raw.name)
    plans_dict = plans.to_dict()  # JSON form: the variants merge into it
    split = json.loads((preprocessed / raw.name / SPLITS_FILE).read_text())[0]
    return preprocessed / raw.name, plans_dict, sorted(split["train"] + split["val"])


def adopt_plan(plans: Plans, dataset_out: Path) -> Plans:
    """Another dataset's plan made this dataset's own: its architecture, spacing and budget stay, while the
    dataset name and the range of trained target times become this dataset's (the planner's rule on its
    fingerprint), so a model trained on it is exported with the times it saw. Written back to plans.json."""
    from iterdce.preprocessing.fingerprint import FINGERPRINT_FILE
    from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
    from iterdce.preprocessing.planner import choose_protocol
    from iterdce.preprocessing.plans_io import save_plans

    fingerprint = DatasetFingerprint.from_dict(json.loads((dataset_out / FINGERPRINT_FILE).read_text()))
    protocol = choose_protocol(fingerprint, len(plans.input_phases))
    adopted = plans.replace(dataset=dataset_out.name, trained_target_times_s=protocol.trained_target_times_s)
    if adopted != plans:
        save_plans(adopted, dataset_out / "plans.json")
    return adopted


def export_model(model_folder: Path, out: Path, name: str) -> None:
    """A trained model as flat files: ``<name>.pth`` (weights-only checkpoint, no optimizer state) and the
    plan ``<name>.plans.json`` -- the form shipped in iterdce/pretrained/ and read by --evaluate-models."""
    import torch

    from iterdce.core.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = fold_folder(model_folder, FOLD_ALL) / CHECKPOINT_FINAL
    if not checkpoint.is_file():
        print(f"nothing to export: {checkpoint} is missing", flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    payload = load_checkpoint(checkpoint)
    keep = ("trainer", "plans_name", "fold", "model_config", "network_state", "epoch", "total_epochs",
            "iterations_per_epoch", "seed")
    save_checkpoint(out / f"{name}.pth", {k: payload[k] for k in keep})
    (out / f"{name}.plans.json").write_text((model_folder / "plans.json").read_text())
    size = (out / f"{name}.pth").stat().st_size
    print(f"exported {name} ({size / 1e6:.2f} MB, torch {torch.__version__})", flush=True)


def import_model(checkpoint: Path, model_folder: Path) -> Path:
    """The inverse of export_model: a model folder (plans.json + fold_all/checkpoint_final.pth)."""
    import shutil

    fold_folder(model_folder, FOLD_ALL).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, fold_folder(model_folder, FOLD_ALL) / CHECKPOINT_FINAL)
    shutil.copyfile(checkpoint.with_suffix(".plans.json"), model_folder / "plans.json")
    return model_folder


def dataset_json_with_inputs(raw_dir: Path, n_inputs: int, folder: Path) -> Path:
    """``folder``/dataset.json: a copy of the raw dataset's naming its first ``n_inputs`` phases as the inputs (the
    cases scored as a model with that many inputs predicts them), each case's times linked beside it."""
    info = json.loads((raw_dir / "dataset.json").read_text())
    scored = folder / "dataset.json"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / TIMES_TR).exists():  # each case's own times, read beside dataset.json
        (folder / TIMES_TR).symlink_to((raw_dir / TIMES_TR).resolve())
    scored.write_text(json.dumps({**info, "input_phases": list(range(n_inputs))}, indent=2))
    return scored
