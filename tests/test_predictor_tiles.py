"""The predictor's inference tile: ``patch`` (the default: the training patch, as before tiles could be chosen),
``auto``, explicit sizes; the provenance of each, the record in ``<case>.json`` and the ``--tile-size`` flag."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iterdce.commands.predict import main as predict_main
from iterdce.core.errors import UsageError
from iterdce.inference.provenance import model_id
from iterdce.inference.tile_choice import forward_bytes
from iterdce.inference.tiled import predict_volume
from tests.test_predictor import (  # noqa: F401  (base_plans: the fixture, used by name)
    PATCH,
    TIMES,
    base_plans,
    make_model,
    predictor_for,
    smooth_phases,
    write_model_folder,
)
from tests.test_predictor_errors import good_case

VOLUME = (2, 40, 36, 12)  # plan-space input phases [n_in, x, y, z]: larger than the patch on every axis


def inputs() -> np.ndarray:
    return smooth_phases(VOLUME[1:], seed=3)


@pytest.fixture()
def folder(tmp_path, base_plans):  # noqa: F811
    return write_model_folder(tmp_path / "results", base_plans, {0: make_model(seed=5)})


def test_patch_is_the_default_with_the_output_and_the_mark_of_before(folder):
    predictor = predictor_for(folder, precision="fp32")  # the CPU's arithmetic before --precision
    assert predictor.settings.tile_size == "patch"
    assert predictor.tile_for(VOLUME[1:]) == PATCH
    reference = predict_volume(predictor.models, torch.from_numpy(inputs()), torch.tensor(TIMES), PATCH, 4,
                               precision="fp32")
    np.testing.assert_array_equal(predictor.synthesize_normalized(inputs(), np.array(TIMES)), reference.numpy())
    # the provenance of 'patch' is that of the settings before tiles could be chosen: outputs of the former
    # export (--compose plan) stay 'done'; the native composition marks its outputs as its own
    checkpoints = [folder / "fold_0" / "checkpoint_final.pth"]
    before = model_id(checkpoints, {"tta": False, "step": 0.5})
    assert predictor_for(folder, precision="fp32", compose="plan").model_id == before
    assert predictor.model_id == model_id(checkpoints, {"tta": False, "step": 0.5, "compose": "last"})


def test_auto_takes_the_whole_volume_rounded_up(folder):
    predictor = predictor_for(folder, tile_size="auto")
    assert predictor.tile_for([40, 36, 12]) == [40, 36, 12]
    assert predictor.tile_for([39, 33, 11]) == [40, 34, 12]  # the network pools once by 2: even sizes
    whole = predict_volume(predictor.models, torch.from_numpy(inputs()), torch.tensor(TIMES), [40, 36, 12], 4)
    np.testing.assert_array_equal(predictor.synthesize_normalized(inputs(), np.array(TIMES)), whole.numpy())
    assert predictor.model_id not in (predictor_for(folder).model_id,
                                      predictor_for(folder, tile_size=[40, 36, 12]).model_id)


def test_auto_respects_a_small_budget(folder):
    whole = forward_bytes([40, 36, 12], 1, predictor_for(folder, tile_size="auto").network_shape)
    predictor = predictor_for(folder, tile_size="auto", tile_memory_gb=0.6 * whole / 2**30)
    tile = predictor.tile_for([40, 36, 12])
    assert tile != [40, 36, 12] and all(p <= t for p, t in zip(PATCH, tile))
    tiny = predictor_for(folder, tile_size="auto", tile_memory_gb=1e-9)
    assert tiny.tile_for([40, 36, 12]) == PATCH


def test_bad_tile_settings_are_refused(folder):
    with pytest.raises(UsageError, match="--tile-size 15 16 8: each of the 3 sizes must be a positive multiple"):
        predictor_for(folder, tile_size=[15, 16, 8])
    with pytest.raises(UsageError, match="--tile-size whole: give 3 sizes, 'auto' or 'patch'"):
        predictor_for(folder, tile_size="whole")
    with pytest.raises(UsageError, match="--tile-memory-gb 0"):
        predictor_for(folder, tile_memory_gb=0)


@pytest.mark.parametrize("flag, expected", [([], PATCH), (["--tile-size", "auto"], [32, 24, 8]),
                                            (["--tile-size", "8", "16", "8"], [8, 16, 8])])
def test_cli_tile_size_reaches_the_case_record(tmp_path, folder, flag, expected):
    good_case(tmp_path / "in", "case_a", shape=(32, 24, 8))  # auto: the plan-space volume rounded up, whole
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu",
            "--quiet", "--results", str(folder.parents[1]), *flag]
    assert predict_main(argv) == 0
    record = json.loads((tmp_path / "out" / "case_a.json").read_text())
    assert record["tile_size"] == expected


@pytest.mark.parametrize("flag", [["--tile-size", "whole"], ["--tile-size", "16", "16"], ["--tile-size", "0", "8", "8"],
                                  ["--tile-memory-gb", "0"]])
def test_cli_refuses_bad_tile_flags(tmp_path, folder, flag, capsys):
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "--results", str(folder.parents[1]),
            *flag]
    with pytest.raises(SystemExit):
        predict_main(argv)
    assert flag[0] in capsys.readouterr().err
