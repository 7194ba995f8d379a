"""Distributed training: two gloo processes on CPU keep identical weights and only rank 0 writes files."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from iterdce.core.checkpoint import load_checkpoint
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.plans_io import load_plans
from iterdce.training.data_loader import PatchSampler
from iterdce.training.run_config import DEFAULT_SEED, TrainingSetup

torch.set_num_threads(1)

DATASET = "Dataset001_Phantom"
WORLD_SIZE = 2
TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ddp_worker(rank: int, port: int, preprocessed: str, results: str, out: str) -> None:
    """One torchrun-like process: train 1 epoch x 3 iterations, then dump its weights and its checkpoint writes."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD_SIZE), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import iterdce.training.trainer as trainer_module
    from iterdce.core.checkpoint import unwrap
    from iterdce.training.distributed import barrier, shutdown
    from iterdce.training.trainer_recursive import WarmupTrainer

    written: list[str] = []
    original = trainer_module.save_checkpoint

    def recording_save(path, payload):
        written.append(Path(path).name)
        original(path, payload)

    trainer_module.save_checkpoint = recording_save
    setup = TrainingSetup(preprocessed_dataset=Path(preprocessed), results_dataset=Path(results), fold=0, epochs=1,
                          iterations_per_epoch=3, num_workers=0, device="cpu", progress=False)
    trainer = WarmupTrainer(setup)
    assert trainer.context.world_size == WORLD_SIZE and trainer.context.rank == rank
    trainer.run()
    torch.save(unwrap(trainer.model).state_dict(), Path(out) / f"rank{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({"written": written}))
    barrier(trainer.context)  # no rank tears gloo down while the other still talks to it (a SIGABRT race at exit)
    shutdown(trainer.context)


@pytest.fixture(scope="module")
def preprocessed_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers import build_preprocessed  # imported here: the spawned workers need not load it

    return build_preprocessed(tmp_path_factory.mktemp("ddp_data")) / DATASET


def test_two_gloo_ranks_keep_identical_weights(preprocessed_dataset: Path, tmp_path: Path) -> None:
    results = tmp_path / "results" / DATASET
    context = mp.start_processes(ddp_worker, args=(free_port(), str(preprocessed_dataset), str(results),
                                                   str(tmp_path)),
                                 nprocs=WORLD_SIZE, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"DDP run did not finish within {TIMEOUT_S} s")

    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    folder = results / "WarmupTrainer__plans" / "fold_0"
    final = load_checkpoint(folder / "checkpoint_final.pth")
    torch.manual_seed(DEFAULT_SEED)  # the trainer's seed: the initial weights both ranks started from
    initial = build_synthesizer(ModelConfig.from_dict(final["model_config"])).state_dict()
    assert any(not torch.equal(initial[k], states[0][k]) for k in initial)  # training did change them
    for key in states[0]:
        assert torch.equal(final["network_state"][key], states[0][key]), key
    assert final["epoch"] == 1 and "world size 2" in " ".join(final["log"]["notes"])

    writes = [json.loads((tmp_path / f"rank{r}.json").read_text())["written"] for r in range(WORLD_SIZE)]
    assert writes[1] == []  # only rank 0 writes checkpoints
    assert {"checkpoint_latest.pth", "checkpoint_final.pth"} <= set(writes[0])
    assert (folder / "training_log.json").is_file() and not list(folder.glob("*.tmp*"))


def test_ranks_draw_different_batches(preprocessed_dataset: Path) -> None:
    plans = load_plans(preprocessed_dataset / "plans.json")
    cases = [f"case_{i:03d}" for i in range(4)]
    folder = preprocessed_dataset / "plans_data"
    samplers = [PatchSampler(folder, cases, plans.patch_size, 2, plans.augmentation, seed=DEFAULT_SEED, rank=r)
                for r in range(WORLD_SIZE)]
    for index in range(3):
        a, b = (s.batch(index)["data"] for s in samplers)
        assert a.shape == b.shape and not np.array_equal(a, b)
