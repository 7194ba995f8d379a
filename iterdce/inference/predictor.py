"""IterativePredictor: trained folds + plan -> synthesized delayed phases of new cases, in their own geometry.

Each case is preprocessed exactly as in training (canonical orientation, crop, TI-norm from its own
reference phase, resampling), synthesized tile-major over the volume, and exported back.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from iterdce.dataset.case import DCECase
from iterdce.dataset.layout import CaseFiles
from iterdce.inference.export import output_name, write_kinetic_map, write_phases
from iterdce.inference.inputs import PredictionInputError, case_times, discover_inputs, load_input_case
from iterdce.inference.model_loading import load_fold_models
from iterdce.inference.tiled import predict_volume
from iterdce.preprocessing.case_io import to_canonical_case
from iterdce.preprocessing.plans_io import load_plans
from iterdce.preprocessing.preprocessor import preprocess_canonical, restore_phases
from iterdce.training.distributed import choose_device


@dataclass
class PredictionSettings:
    """How to predict: which folds and checkpoint, on which device, with how many tiles per forward."""

    folds: Sequence[int | str] = (0, 1, 2, 3, 4)
    checkpoint: str = "final"
    device: str = "auto"
    tile_batch: int = 4
    step_fraction: float = 0.5
    tta: bool = False
    progress: bool = True


class IterativePredictor:
    """Loads a model folder once and predicts any number of cases."""

    def __init__(self, model_folder: Path, settings: PredictionSettings | None = None) -> None:
        self.settings = settings or PredictionSettings()
        self.model_folder = Path(model_folder)
        self.plans = load_plans(self.model_folder / "plans.json")
        self.device = choose_device(self.settings.device)
        self.models, self.folds, self.model_config = load_fold_models(
            self.model_folder, self.settings.folds, self.settings.checkpoint, self.device)
        self.input_phases = list(self.plans["input_phases"])
        self.target_phases = list(self.plans["target_phases"])

    @property
    def mirror_axes(self) -> list[int]:
        return list(self.plans["augmentation"].get("mirror_axes", [])) if self.settings.tta else []

    def synthesize_normalized(self, inputs: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """TI-normalized input phases [n_in, x, y, z] in plan space -> targets [n_targets, x, y, z] (plan space).

        On a CUDA out-of-memory error the accumulators move to the CPU and the case is retried.
        """
        tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.device)
        times = torch.as_tensor(times_s, dtype=torch.float32, device=self.device)
        args = (self.models, tensor, times, self.plans["patch_size"], len(self.target_phases),
                self.settings.tile_batch, self.settings.step_fraction, self.mirror_axes)
        try:
            result = predict_volume(*args, progress=self.settings.progress)
        except torch.OutOfMemoryError:
            if self.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            result = predict_volume(*args, stitch_device=torch.device("cpu"), progress=self.settings.progress)
        return result.cpu().numpy()

    def predict_case(self, case: DCECase) -> np.ndarray:
        """Input phases of ``case`` (original geometry) -> synthesized target phases [n_targets, X, Y, Z]."""
        mask_kind = self.plans["normalization"]["mask"]
        n_in = len(self.input_phases)
        canonical = to_canonical_case(case, mask_kind, input_phases=range(n_in))
        reference = self.input_phases.index(self.plans["reference_phase"])
        pre = preprocess_canonical(canonical, self.plans["spacing"], reference, mask_kind)
        synthesized = self.synthesize_normalized(pre.data, case.times_s)
        return restore_phases(synthesized, pre.properties)

    def outputs_of(self, out_dir: Path, case_id: str) -> list[Path]:
        return [out_dir / output_name(case_id, p) for p in self.target_phases]

    def predict_folder(self, in_dir: Path, out_dir: Path, overwrite: bool = False,
                       save_kinetic_map: bool = False) -> list[str]:
        """Check every input first, then predict each case not done yet; returns the cases predicted."""
        cases, problems = discover_inputs(Path(in_dir), self.input_phases)
        times = {}
        for case_id, files in cases.items():
            try:
                times[case_id] = case_times(files, self.plans["phase_times_s"], len(self.input_phases))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise PredictionInputError(f"{in_dir}: {len(problems)} problem(s):\n" +
                                       "\n".join(f"  - {p}" for p in problems))
        out_dir = Path(out_dir)
        todo = [c for c in cases if overwrite or not all(p.is_file() for p in self.outputs_of(out_dir, c))]
        if len(todo) < len(cases):
            print(f"{len(cases) - len(todo)} case(s) already predicted in {out_dir} (use --overwrite to redo)")
        out_dir.mkdir(parents=True, exist_ok=True)
        for case_id in tqdm(todo, desc="cases", unit="case", disable=not self.settings.progress):
            self.predict_and_write(cases[case_id], times[case_id], out_dir, save_kinetic_map)
        return todo

    def predict_and_write(self, files: CaseFiles, times_s: np.ndarray, out_dir: Path, save_kinetic_map: bool
                          ) -> None:
        """One case from files to written outputs."""
        case = load_input_case(files, self.input_phases, times_s)
        synthesized = self.predict_case(case)
        write_phases(synthesized, case.geometry, out_dir, case.case_id, self.target_phases)
        if save_kinetic_map:
            write_kinetic_map(np.concatenate([case.image, synthesized]), times_s, case.geometry, out_dir,
                              case.case_id)

    def describe(self) -> str:
        return json.dumps({"model": str(self.model_folder), "folds": self.folds, "device": str(self.device),
                           "checkpoint": self.settings.checkpoint, "tta": self.settings.tta})
