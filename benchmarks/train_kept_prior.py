"""``iterdce_train`` with ``--pretrained-weights`` that keeps the pretrained model's kinetic prior instead of
refitting it on the fine-tuning cases (training always refits it: trainer.Trainer.fit_kinetic_prior).

An experiment driver, not a user option: it measured whether a fine-tuned model's loss on one site comes from the
refitted prior (reports/native_resolution.md, "Fine-tuning with the shipped prior kept"). Same arguments as
``iterdce_train``:

    python -m benchmarks.train_kept_prior all -d 898 --plans plans --pretrained-weights CKPT --epochs 2 ...
"""
from __future__ import annotations

import sys

from iterdce.commands import train
from iterdce.training import trainer as trainer_module


def keep_pretrained_prior(self: trainer_module.Trainer) -> None:
    """Replaces ``Trainer.fit_kinetic_prior``: the prior loaded with the pretrained weights stays as it is."""
    prior = getattr(trainer_module.unwrap(self.model), "kinetic_prior", None)
    if prior is None or not prior.is_fitted():
        raise SystemExit("the pretrained weights carry no fitted kinetic prior to keep (pass --pretrained-weights "
                         "of a model trained with one)")
    self.log.notes.append("kinetic prior: kept from the pretrained weights (benchmarks/train_kept_prior.py)")


def main() -> None:
    trainer_module.Trainer.fit_kinetic_prior = keep_pretrained_prior  # type: ignore[method-assign]
    sys.exit(train.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
