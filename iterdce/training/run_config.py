"""What one training run needs besides the plan: folders, fold, budget, device, workers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iterdce.core.errors import JSONFileError, UsageError
from iterdce.core.folder_names import FOLD_ALL, fold_folder, model_folder_name
from iterdce.network.precision import PRECISIONS
from iterdce.preprocessing.pipeline import data_folder
from iterdce.preprocessing.plan_schema import Plans
from iterdce.preprocessing.plans_io import load_plans
from iterdce.preprocessing.splits import SPLITS_FILE, read_splits

DEFAULT_SEED = 12345  # of the initial weights and of every batch (iterdce_train --seed)


@dataclass
class TrainingSetup:
    """Per-run settings; everything that changes the model comes from ``plans``."""

    preprocessed_dataset: Path
    results_dataset: Path
    plans_name: str = "plans"
    fold: int | str = 0
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    num_workers: int = 0
    device: str = "auto"
    seed: int = DEFAULT_SEED
    resume: bool = False
    progress: bool = True
    plans: Plans | None = None  # None: read <preprocessed>/<plans_name>.json
    pretrained_weights: Path | None = None  # initialise the first stage from this checkpoint
    precision: str = "auto"  # network arithmetic: auto, bf16 or fp32 (network/precision.py)

    def __post_init__(self) -> None:
        """Check the budget flags; read the plan when none is given."""
        for name in ("epochs", "iterations_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.num_workers < 0:
            raise UsageError(f"-np/--num-processes must be >= 0, got {self.num_workers}")
        if self.plans is None:
            self.plans = load_plans(self.preprocessed_dataset / f"{self.plans_name}.json")

    @property
    def data_dir(self) -> Path:
        return data_folder(self.preprocessed_dataset, self.plans_name)

    def fold_cases(self) -> tuple[list[str], list[str]]:
        """(training cases, validation cases) of the fold; fold ``all`` trains and validates on everything."""
        path = self.preprocessed_dataset / SPLITS_FILE
        if not path.is_file():
            raise JSONFileError(f"{path}: no splits; run iterdce_plan_and_preprocess first", path)
        splits = read_splits(path)
        if self.fold == FOLD_ALL:
            cases = sorted(splits[0]["train"] + splits[0]["val"])
            return cases, cases
        fold = int(self.fold)
        if not 0 <= fold < len(splits):
            raise UsageError(f"fold {fold} does not exist: {path} has folds 0-{len(splits) - 1}")
        return list(splits[fold]["train"]), list(splits[fold]["val"])

    def output_folder(self, trainer_name: str) -> Path:
        """``<results>/<Dataset>/<Trainer>__<plans>/fold_<k>``."""
        return fold_folder(self.results_dataset / model_folder_name(trainer_name, self.plans_name), self.fold)
