"""The bad-input matrix: one row per malformed input or flag, across every command.

Each row: the command, its arguments (``{ws}`` is the copied workspace), what to break first, the exit code,
and text the error must contain (the file or flag it is about). Every row also checks that the workspace is
byte-identical afterwards: nothing written, nothing overwritten, no folder created.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.bad_inputs import breakers as b
from tests.bad_inputs.workspace import SHARED, TRAINER

ROOTS = ("--raw", "{ws}/raw", "--preprocessed", "{ws}/preprocessed", "--results", "{ws}/results")
PREDICT = ("-i", "{ws}/inputs", "-o", "{ws}/out", "-d", "1", "-tr", TRAINER, "-f", "0", "--device", "cpu", "--quiet")
TRAIN = ("0", "-d", "1", "-tr", TRAINER, "--device", "cpu", "-np", "0", "--no-validation")
EVALUATE = ("--pred", "{ws}/pred", "-r", "{ws}/raw/Dataset001_Phantom/imagesTr", "-o", "{ws}/report")
IMAGES = "Dataset001_Phantom/imagesTr"
EXPORT = ("-d", "1", "-tr", TRAINER, "-f", "0")
MODEL_ZIP = "{ws}/model.zip"
PREDICT_MODEL = ("-i", "{ws}/inputs", "-o", "{ws}/out", "--device", "cpu", "--quiet")


@dataclass(frozen=True)
class Row:
    name: str
    command: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    breaks: Callable[[Path], None] | None = None
    code: int = 1
    needs_non_root: bool = False  # a read-only folder: root is not stopped by one, so the test forces the refusal


def verify(name, expect, breaks=None, args=()):
    return Row(f"verify-{name}", "verify", ("-d", "1", *ROOTS, *args), expect, breaks)


def plan(name, expect, breaks=None, args=(), code=1, **kw):
    return Row(f"plan-{name}", "plan", ("-d", "1", "-np", "1", *ROOTS, *args), expect, breaks, code, **kw)


def train(name, expect, breaks=None, args=(), code=1, base=TRAIN):
    return Row(f"train-{name}", "train", (*base, *ROOTS, *args), expect, breaks, code)


def predict(name, expect, breaks=None, args=(), code=1, base=PREDICT, **kw):
    return Row(f"predict-{name}", "predict", (*base, *ROOTS, *args), expect, breaks, code, **kw)


def evaluate(name, expect, breaks=None, args=(), code=1, base=EVALUATE):
    return Row(f"evaluate-{name}", "evaluate", (*base, *args), expect, breaks, code)


def export(name, expect, breaks=None, args=(), code=1, base=EXPORT):
    return Row(f"export-{name}", "export", (*base, *ROOTS, *args), expect, breaks, code)


def install(name, expect, breaks=None, args=(), code=1, zip_path=MODEL_ZIP):
    return Row(f"install-{name}", "install", (zip_path, *ROOTS, *args), expect, breaks, code)


def simulate(name, expect, breaks=None, args=(), code=1):
    return Row(f"simulate-{name}", "simulate", ("-o", "{ws}/sim", "-n", "2", "--shape", "24", "24", "8", *args),
               expect, breaks, code)


def _copy_real_phases(ws: Path) -> None:
    shutil.copytree(b.raw(ws) / "imagesTr", ws / "realcopy")


def _readonly(path_of: Callable[[Path], Path]) -> Callable[[Path], None]:
    def breaks(ws: Path) -> None:
        path = path_of(ws)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
    return breaks


ROWS: list[Row] = [
    # ---------------------------------------------------------------- iterdce_verify_dataset
    verify("missing-phase", ("case_001_0002.nii.gz", "missing phase"), lambda ws: b.image(ws).unlink()),
    verify("extra-phase", ("case_001_0004.nii.gz", "beyond"),
           lambda ws: shutil.copyfile(b.image(ws), b.image(ws, phase=4))),
    verify("duplicate-phase", ("case_001_0002.nii", "duplicate"),
           lambda ws: b.image(ws).with_name("case_001_0002.nii").write_bytes(
               __import__("gzip").decompress(b.image(ws).read_bytes()))),
    verify("shape-mismatch", ("case_001_0002.nii.gz", "shape"), lambda ws: b.reshape(b.image(ws), (20, 24, 8))),
    verify("affine-mismatch", ("case_001_0002.nii.gz", "affine differs"), lambda ws: b.shift_affine(b.image(ws))),
    verify("nan", ("case_001_0002.nii.gz", "NaN/inf"), lambda ws: b.set_voxel(b.image(ws), np.nan)),
    verify("inf", ("case_001_0002.nii.gz", "NaN/inf"), lambda ws: b.set_voxel(b.image(ws), np.inf)),
    verify("constant", ("case_001_0002.nii.gz", "constant"), lambda ws: b.make_constant(b.image(ws))),
    verify("4d-phase", ("case_001_0002.nii.gz", "expected 3D"), lambda ws: b.four_d(b.image(ws))),
    verify("not-nifti", ("case_001_0002.nii.gz", "cannot be read"), lambda ws: b.not_gzip(b.image(ws))),
    verify("truncated-gzip", ("case_001_0002.nii.gz",), lambda ws: b.truncate(b.image(ws))),
    verify("json-garbage", ("dataset.json", "line 1 column 2"), lambda ws: b.text(b.raw(ws) / "dataset.json", "{{")),
    verify("json-not-object", ("dataset.json", "top level"), lambda ws: b.text(b.raw(ws) / "dataset.json", "[1]")),
    verify("json-no-times", ("dataset.json", "phase_times_s"),
           lambda ws: b.edit_json(b.raw(ws) / "dataset.json", phase_times_s=None)),
    verify("json-times-decrease", ("dataset.json", "not strictly increasing"),
           lambda ws: b.edit_json(b.raw(ws) / "dataset.json", phase_times_s=[0, 85, 80, 225])),
    verify("json-input-phases", ("dataset.json", "input_phases"),
           lambda ws: b.edit_json(b.raw(ws) / "dataset.json", input_phases=[1, 0])),
    verify("json-num-training", ("dataset.json", "numTraining"),
           lambda ws: b.edit_json(b.raw(ws) / "dataset.json", numTraining=9)),
    verify("timing-garbage", ("timesTr/case_000.json", "not valid JSON"),
           lambda ws: b.text(b.raw(ws) / "timesTr" / "case_000.json", "nope")),
    verify("timing-length", ("timesTr/case_000.json", "entries"),
           lambda ws: b.text(b.raw(ws) / "timesTr" / "case_000.json", '{"phase_times_s": [0, 80]}')),
    verify("label-shape", ("labelsTr/case_000.nii.gz", "shape"),
           lambda ws: b.reshape(b.raw(ws) / "labelsTr" / "case_000.nii.gz", (20, 20, 8))),
    verify("label-float", ("labelsTr/case_000.nii.gz", "non-integer"),
           lambda ws: b.set_voxel(b.raw(ws) / "labelsTr" / "case_000.nii.gz", 0.5)),
    verify("mask-not-binary", ("masksTr/case_000.nii.gz", "not binary"),
           lambda ws: b.set_voxel(b.raw(ws) / "masksTr" / "case_000.nii.gz", 3.0)),
    verify("mask-stray", ("masksTr/case_009.nii.gz", "belongs to no case"),
           lambda ws: shutil.copyfile(b.raw(ws) / "masksTr" / "case_000.nii.gz",
                                      b.raw(ws) / "masksTr" / "case_009.nii.gz")),
    verify("case-id-too-long", (b.LONG_ID[:20], "case id is 240 bytes"),
           lambda ws: b.long_case(b.raw(ws) / "imagesTr", range(4))),
    verify("unknown-dataset", ("dataset '7'",), args=("-d", "7")),
    verify("phase-is-folder", ("case_001_0002.nii.gz", "is a folder"),
           lambda ws: b.replace_with(b.image(ws), "folder")),
    verify("phase-is-fifo", ("case_001_0002.nii.gz", "named pipe"), lambda ws: b.replace_with(b.image(ws), "fifo")),
    verify("phase-is-link-loop", ("case_001_0002.nii.gz", "symbolic link to nothing"),
           lambda ws: b.replace_with(b.image(ws), "loop")),
    verify("label-above-int16", ("labelsTr/case_000.nii.gz", "above 32767"),
           lambda ws: b.set_voxel(b.raw(ws) / "labelsTr" / "case_000.nii.gz", 40000.0)),
    verify("no-voxel-size", ("case_001_0002.nii.gz", "no voxel size"), lambda ws: b.no_spacing(b.image(ws))),
    # ---------------------------------------------------------------- iterdce_plan_and_preprocess
    plan("invalid-dataset", ("case_001_0002.nii.gz",), lambda ws: b.image(ws).unlink()),
    plan("case-id-too-long", ("case id is 240 bytes",), lambda ws: b.long_case(b.raw(ws) / "imagesTr", range(4))),
    plan("np-zero", ("-np",), args=("-np", "0"), code=2),
    plan("preprocessed-is-raw-dataset", ("--preprocessed", "is the raw dataset"), args=("--preprocessed", "{ws}/raw")),
    plan("preprocessed-inside-raw-dataset", ("--preprocessed", "lies inside the raw dataset"),
         args=("--preprocessed", "{ws}/raw/Dataset001_Phantom")),
    plan("preprocessed-links-to-raw", ("--preprocessed", "is the raw dataset"),
         lambda ws: (ws / "rawlink").symlink_to(ws / "raw"), args=("--preprocessed", "{ws}/rawlink")),
    plan("plans-name-is-a-path", ("-p", "not a plan name"), args=("-p", "../../x"), code=2),
    plan("plans-name-absolute", ("-p", "not a plan name"), args=("-p", "/tmp/x"), code=2),
    plan("label-above-int16", ("labelsTr/case_000.nii.gz", "above 32767"),
         lambda ws: b.set_voxel(b.raw(ws) / "labelsTr" / "case_000.nii.gz", 40000.0)),
    plan("no-voxel-size", ("case_001_0002.nii.gz", "no voxel size"), lambda ws: b.no_spacing(b.image(ws))),
    plan("gpu-memory-negative", ("--gpu-memory-gb",), args=("--gpu-memory-gb", "-1"), code=2),
    plan("preprocessed-is-file", ("--preprocessed", "not a folder"), lambda ws: b.text(ws / "prepfile", "x"),
         args=("--preprocessed", "{ws}/prepfile")),
    plan("preprocessed-read-only", ("--preprocessed", "cannot write"), _readonly(lambda ws: ws / "ro"),
         args=("--preprocessed", "{ws}/ro"), needs_non_root=True),
    plan("plans-garbage", ("plans.json", "line 1 column 2"), lambda ws: b.text(b.prep(ws) / "plans.json", "{x")),
    plan("plans-version", ("plans.json", "version"), lambda ws: b.edit_json(b.prep(ws) / "plans.json", version=99)),
    plan("splits-garbage", ("splits_final.json", "line 1 column 1"),
         lambda ws: b.text(b.prep(ws) / "splits_final.json", "garbage")),
    plan("splits-unknown-case", ("splits_final.json", "case_999", "does not hold"),
         lambda ws: b.text(b.prep(ws) / "splits_final.json",
                           '[{"train": ["case_000", "case_001"], "val": ["case_999"]}]')),
    plan("splits-structure", ("splits_final.json", "fold 0"),
         lambda ws: b.text(b.prep(ws) / "splits_final.json", "[1, 2]")),
    # ---------------------------------------------------------------- iterdce_train
    train("device-unknown", ("--device gpu9", "choose auto, cpu, cuda"), args=("--device", "gpu9")),
    train("device-no-gpu", ("--device cuda:3",), args=("--device", "cuda:3")),
    train("results-is-preprocessed", ("--results", "is the preprocessed dataset"),
          args=("--results", "{ws}/preprocessed")),
    train("results-is-raw", ("--results", "is the raw dataset"), args=("--results", "{ws}/raw")),
    train("results-links-to-preprocessed", ("--results", "is the preprocessed dataset"),
          lambda ws: (ws / "preplink").symlink_to(ws / "preprocessed"), args=("--results", "{ws}/preplink")),
    train("epochs-negative", ("--epochs",), args=("--epochs", "-3"), code=2),
    train("epochs-zero", ("--epochs",), args=("--epochs", "0"), code=2),
    train("iterations-zero", ("--iterations-per-epoch",), args=("--iterations-per-epoch", "0"), code=2),
    train("workers-negative", ("-np",), args=("-np", "-2"), code=2),
    train("fold-not-a-number", ("fold",), base=("x", "-d", "1", "-tr", TRAINER), code=2),
    train("fold-missing", ("fold 7", "splits_final.json"), base=("7", "-d", "1", "-tr", TRAINER, "--device", "cpu")),
    train("unknown-trainer", ("-tr",), base=("0", "-d", "1", "-tr", "NoSuchTrainer"), code=2),
    train("unknown-dataset", ("dataset '9'",), args=("-d", "9")),
    train("splits-garbage", ("splits_final.json", "line 1 column 1"),
          lambda ws: b.text(b.prep(ws) / "splits_final.json", "garbage")),
    train("splits-missing", ("splits_final.json", "iterdce_plan_and_preprocess"),
          lambda ws: (b.prep(ws) / "splits_final.json").unlink()),
    train("plans-garbage", ("plans.json", "not valid JSON"), lambda ws: b.text(b.prep(ws) / "plans.json", "")),
    train("npz-truncated", ("case_000.npz", "iterdce_plan_and_preprocess -d Dataset001_Phantom"),
          lambda ws: b.truncate(b.prep(ws) / "plans_data" / "case_000.npz")),
    train("npz-altered", ("case_001.npz", "checksum"),
          lambda ws: b.flip_middle_byte(b.prep(ws) / "plans_data" / "case_001.npz")),
    train("npz-missing", ("case_002.npz", "missing"), lambda ws: (b.prep(ws) / "plans_data" / "case_002.npz").unlink()),
    train("sidecar-garbage", ("case_003.json", "not valid JSON"),
          lambda ws: b.text(b.prep(ws) / "plans_data" / "case_003.json", "{")),
    train("results-is-file", ("--results",), lambda ws: b.text(ws / "resfile", "x"),
          args=("--results", "{ws}/resfile")),
    train("checkpoint-truncated", ("checkpoint_latest.pth", "cannot be read"),
          lambda ws: b.truncate(b.model(ws) / "fold_0" / "checkpoint_latest.pth"), args=("--continue",)),
    train("checkpoint-malicious", ("checkpoint_latest.pth", "refused: it holds Python objects"),
          lambda ws: b.malicious_checkpoint(b.model(ws) / "fold_0" / "checkpoint_latest.pth"), args=("--continue",)),
    train("pretrained-missing", ("nothere.pth", "not found"), args=("--pretrained-weights", "{ws}/nothere.pth")),
    train("pretrained-misfit-new-fold", ("misfit.pth", "does not fit this plan's"),
          lambda ws: (shutil.copyfile(b.model(ws) / "fold_0" / "checkpoint_final.pth", ws / "misfit.pth"),
                      b.misfit_checkpoint(ws / "misfit.pth")),
          args=("--pretrained-weights", "{ws}/misfit.pth"), base=("1", *TRAIN[1:])),
    train("pretrained-malicious", ("evil.pth", "refused: it holds Python objects"),
          lambda ws: b.malicious_checkpoint(ws / "evil.pth"), args=("--pretrained-weights", "{ws}/evil.pth")),
    train("checkpoint-misfit", ("checkpoint_latest.pth", "do not fit"),
          lambda ws: b.misfit_checkpoint(b.model(ws) / "fold_0" / "checkpoint_latest.pth"), args=("--continue",)),
    # ---------------------------------------------------------------- iterdce_predict
    predict("output-is-input", ("-o", "input folder"), args=("-o", "{ws}/inputs")),
    predict("output-inside-input", ("-o", "input folder"), args=("-o", "{ws}/inputs/sub")),
    predict("output-holds-input", ("-o", "holds the input folder -i"), args=("-o", "{ws}")),
    predict("output-links-to-input", ("-o", "is the input folder -i"),
            lambda ws: (ws / "inlink").symlink_to(ws / "inputs"), args=("-o", "{ws}/inlink")),
    predict("output-holds-real-phases", ("case_000_0002.nii.gz", "not written by iterdce_predict"),
            _copy_real_phases, args=("-o", "{ws}/realcopy")),
    predict("overwrite-real-phases", ("case_000_0002.nii.gz", "never overwritten"), _copy_real_phases,
            args=("-o", "{ws}/realcopy", "--overwrite")),
    predict("other-model", ("case_000_0002.nii.gz", "another model"),
            lambda ws: b.foreign_mark(ws / "pred" / "case_000_0002.nii.gz"), args=("-o", "{ws}/pred")),
    predict("output-is-file", ("-o", "not a folder"), lambda ws: b.text(ws / "outfile", "x"),
            args=("-o", "{ws}/outfile")),
    predict("output-read-only", ("-o", "cannot write"), _readonly(lambda ws: ws / "ro"), args=("-o", "{ws}/ro/out"),
            needs_non_root=True),
    predict("tile-batch-zero", ("--tile-batch",), args=("--tile-batch", "0"), code=2),
    predict("device-unknown", ("--device gpu9", "choose auto, cpu, cuda"), args=("--device", "gpu9")),
    predict("tile-size-huge", ("--tile-size 4096 4096 4096",), args=("--tile-size", "4096", "4096", "4096")),
    predict("input-missing-phase", ("case_001_0001.nii.gz",),
            lambda ws: (ws / "inputs" / "case_001_0001.nii.gz").unlink()),
    predict("input-nan", ("case_001_0001.nii.gz", "NaN"), lambda ws: b.set_voxel(ws / "inputs" / "case_001_0001.nii.gz",
                                                                            np.nan)),
    predict("input-constant", ("case_001_0000.nii.gz", "constant"),
            lambda ws: b.make_constant(ws / "inputs" / "case_001_0000.nii.gz")),
    predict("input-4d", ("case_001_0000.nii.gz", "3D"), lambda ws: b.four_d(ws / "inputs" / "case_001_0000.nii.gz")),
    predict("input-not-nifti", ("case_001_0000.nii.gz",),
            lambda ws: b.not_gzip(ws / "inputs" / "case_001_0000.nii.gz")),
    predict("input-truncated", ("case_001_0000.nii.gz",),
            lambda ws: b.truncate(ws / "inputs" / "case_001_0000.nii.gz")),
    predict("input-geometry", ("case_001_0001.nii.gz", "geometry"),
            lambda ws: b.shift_affine(ws / "inputs" / "case_001_0001.nii.gz")),
    predict("input-timing-garbage", ("case_000.json", "not valid JSON"),
            lambda ws: b.text(ws / "inputs" / "case_000.json", "[")),
    predict("input-timing-length", ("case_000.json", "phase_times_s"),
            lambda ws: b.text(ws / "inputs" / "case_000.json", '{"phase_times_s": [0]}')),
    predict("input-stray-file", ("notes.txt", "not named"), lambda ws: b.text(ws / "inputs" / "notes.txt", "x")),
    predict("input-phase-is-folder", ("case_001_0001.nii.gz", "is a folder"),
            lambda ws: b.replace_with(ws / "inputs" / "case_001_0001.nii.gz", "folder")),
    predict("input-phase-is-fifo", ("case_001_0001.nii.gz", "named pipe"),
            lambda ws: b.replace_with(ws / "inputs" / "case_001_0001.nii.gz", "fifo")),
    predict("input-duplicate-phase", ("case_001_0001.nii.gz", "duplicate of case_001_0001.nii"),
            lambda ws: (ws / "inputs" / "case_001_0001.nii").write_bytes(
                __import__("gzip").decompress((ws / "inputs" / "case_001_0001.nii.gz").read_bytes()))),
    predict("input-folder-missing", ("nothere",), args=("-i", "{ws}/nothere")),
    predict("input-case-id-too-long", ("case id is 240 bytes",), lambda ws: b.long_case(ws / "inputs", range(2))),
    predict("fold-not-trained", ("fold_3",), args=("-f", "3")),
    predict("unknown-trainer", ("NoSuchTrainer__plans",), args=("-tr", "NoSuchTrainer")),
    predict("checkpoint-truncated", ("checkpoint_final.pth", "cannot be read"),
            lambda ws: b.truncate(b.model(ws) / "fold_0" / "checkpoint_final.pth")),
    predict("checkpoint-malicious", ("checkpoint_final.pth", "refused: it holds Python objects"),
            lambda ws: b.malicious_checkpoint(b.model(ws) / "fold_0" / "checkpoint_final.pth")),
    predict("checkpoint-misfit", ("checkpoint_final.pth", "do not fit"),
            lambda ws: b.misfit_checkpoint(b.model(ws) / "fold_0" / "checkpoint_final.pth")),
    predict("model-plans-garbage", ("plans.json", "line 1 column 1"),
            lambda ws: b.text(b.model(ws) / "plans.json", "x")),
    predict("model-not-installed", ("--model nosuch", "no model of that name", SHARED), base=PREDICT_MODEL,
            args=("--model", "nosuch")),
    predict("model-and-dataset", ("-d/--dataset and --model",), args=("--model", SHARED), code=2),
    predict("model-zip-slip", ("model.zip", "'../evil.json'", "outside its folder"),
            lambda ws: b.zip_with_member(ws / "model.zip", "../evil.json"), base=PREDICT_MODEL,
            args=("--model", MODEL_ZIP)),
    predict("model-zip-truncated", ("model.zip", "not a readable zip"), lambda ws: b.truncate(ws / "model.zip"),
            base=PREDICT_MODEL, args=("--model", MODEL_ZIP)),
    # ---------------------------------------------------------------- iterdce_export_model / iterdce_install_model
    export("output-exists", ("model.zip", "exists; pass --overwrite"), args=("-o", MODEL_ZIP)),
    export("output-not-zip", ("model.tar", ".zip file"), args=("-o", "{ws}/model.tar")),
    export("fold-not-trained", ("fold_3", "checkpoint not found"), args=("-o", "{ws}/m.zip", "-f", "3")),
    export("fold-not-in-splits", ("fold 7 does not exist",), args=("-o", "{ws}/m.zip", "-f", "7")),
    export("unknown-trainer", ("NoSuchTrainer__plans", "no plan found"),
           args=("-o", "{ws}/m.zip", "-tr", "NoSuchTrainer")),
    export("checkpoint-malicious", ("checkpoint_final.pth", "refused: it holds Python objects"),
           lambda ws: b.malicious_checkpoint(b.model(ws) / "fold_0" / "checkpoint_final.pth"),
           args=("-o", "{ws}/m.zip")),
    export("bad-name", ("--name", "a model name"), args=("-o", "{ws}/m.zip", "--name", "../up")),
    export("output-flag-missing", ("-o/--output",), code=2),
    install("truncated-zip", ("model.zip", "not a readable zip"), lambda ws: b.truncate(ws / "model.zip"),
            args=("--name", "new")),
    install("not-a-zip", ("model.zip", "not a readable zip"), lambda ws: b.text(ws / "model.zip", "PK?"),
            args=("--name", "new")),
    install("missing-zip", ("nothere.zip", "no such file"), zip_path="{ws}/nothere.zip"),
    install("zip-slip", ("'../evil.json'", "a path outside its folder"),
            lambda ws: b.zip_with_member(ws / "model.zip", "../evil.json"), args=("--name", "new")),
    install("absolute-path", ("'/tmp/evil.json'", "an absolute path"),
            lambda ws: b.zip_with_member(ws / "model.zip", "/tmp/evil.json"), args=("--name", "new")),
    install("backslash-path", ("a backslash",),
            lambda ws: b.zip_with_member(ws / "model.zip", "..\\evil.json"), args=("--name", "new")),
    install("symlink-member", ("fold_0/kinetic_regression.json", "symbolic link"),
            lambda ws: b.zip_with_member(ws / "model.zip", "fold_0/kinetic_regression.json", symlink=True),
            args=("--name", "new")),
    install("unknown-member", ("notes.txt", "not part of a shared model"),
            lambda ws: b.rewrite_zip(ws / "model.zip", lambda files: files.update({"notes.txt": b"x"})),
            args=("--name", "new")),
    install("checksum-mismatch", ("checksum mismatch", "plans.json"),
            lambda ws: b.rewrite_zip(ws / "model.zip", lambda files: files.update(
                {"plans.json": files["plans.json"].replace(b'"patch_size"', b' "patch_size"')}),
                refresh_manifest=False), args=("--name", "new")),
    install("no-manifest", ("no manifest.json",),
            lambda ws: b.rewrite_zip(ws / "model.zip", lambda files: files.pop("manifest.json"),
                                     refresh_manifest=False), args=("--name", "new")),
    install("pickled-checkpoint", ("fold_0/checkpoint_final.pth", "refused: it holds Python objects"),
            lambda ws: b.zip_pickled_checkpoint(ws / "model.zip", ws / "evil.pth"), args=("--name", "new")),
    install("unknown-plan-version", ("plans.json", "version 99 is not supported"),
            lambda ws: b.zip_plans_version(ws / "model.zip", 99), args=("--name", "new")),
    install("card-not-its-weights", ("model_card.json", "not the SHA-256 of the weights"),
            lambda ws: b.rewrite_zip(ws / "model.zip", lambda files: files.update({"model_card.json": files[
                "model_card.json"].replace(b'"id": "', b'"id": "0')})), args=("--name", "new")),
    install("existing-name", (SHARED, "installed already", "--overwrite"), args=("--name", SHARED)),
    install("bad-name", ("--name", "a model name"), args=("--name", "../up")),
    # ---------------------------------------------------------------- iterdce_evaluate
    evaluate("missing-prediction", ("case_000_0003.nii.gz", "paired by index"),
             lambda ws: (ws / "pred" / "case_000_0003.nii.gz").unlink()),
    evaluate("nan-prediction", ("case_001_0002.nii.gz", "NaN"),
             lambda ws: b.set_voxel(ws / "pred" / "case_001_0002.nii.gz",
                                                                                  np.nan)),
    evaluate("reference-phase-too-high", ("--reference-phase 9", "0-3"), args=("--reference-phase", "9")),
    evaluate("reference-phase-negative", ("--reference-phase -1",), args=("--reference-phase", "-1")),
    evaluate("prediction-not-nifti", ("case_001_0003.nii.gz",),
             lambda ws: b.not_gzip(ws / "pred" / "case_001_0003.nii.gz")),
    evaluate("prediction-4d", ("case_001_0003.nii.gz", "expected one 3D volume per phase"),
             lambda ws: b.four_d(ws / "pred" / "case_001_0003.nii.gz")),
    evaluate("prediction-affine", ("case_001_0003.nii.gz", "affine differs", "same shape"),
             lambda ws: b.shift_affine(ws / "pred" / "case_001_0003.nii.gz")),
    evaluate("prediction-nan-affine", ("case_001_0003.nii.gz", "affine is not finite"),
             lambda ws: b.nan_affine(ws / "pred" / "case_001_0003.nii.gz")),
    evaluate("prediction-geometry", ("case_001_0003.nii.gz", "geometry"),
             lambda ws: b.reshape(ws / "pred" / "case_001_0003.nii.gz", (20, 24, 8))),
    evaluate("prediction-beyond-phases", ("case_001_0007.nii.gz", "phase 7"),
             lambda ws: shutil.copyfile(ws / "pred" / "case_001_0003.nii.gz", ws / "pred" / "case_001_0007.nii.gz")),
    evaluate("missing-real-phase", ("case_001_0002.nii.gz", "missing real phase"), lambda ws: b.image(ws).unlink()),
    evaluate("label-shape", ("case_000.nii.gz", "geometry"),
             lambda ws: b.reshape(b.raw(ws) / "labelsTr" / "case_000.nii.gz", (20, 20, 8)),
             args=("-l", "{ws}/raw/Dataset001_Phantom/labelsTr")),
    evaluate("pred-folder-missing", ("nothere", "folder not found"), args=("--pred", "{ws}/nothere")),
    evaluate("dataset-json-garbage", ("dataset.json", "line 1 column 1"),
             lambda ws: b.text(b.raw(ws) / "dataset.json", "oops")),
    evaluate("timing-garbage", ("timesTr/case_000.json",),
             lambda ws: b.text(b.raw(ws) / "timesTr" / "case_000.json", "?")),
    evaluate("output-is-reference", ("-o", "is the reference folder -r"),
             args=("-o", "{ws}/raw/Dataset001_Phantom/imagesTr")),
    evaluate("output-is-prediction", ("-o", "is the prediction folder --pred"), args=("-o", "{ws}/pred")),
    evaluate("output-holds-reference", ("-o", "holds the reference folder -r"),
             args=("-o", "{ws}/raw/Dataset001_Phantom")),
    evaluate("output-inside-prediction", ("-o", "lies inside the prediction folder --pred"),
             args=("-o", "{ws}/pred/report")),
    evaluate("output-links-to-prediction", ("-o", "is the prediction folder --pred"),
             lambda ws: (ws / "predlink").symlink_to(ws / "pred"), args=("-o", "{ws}/predlink")),
    evaluate("label-above-int16", ("case_000.nii.gz", "above 32767"),
             lambda ws: b.set_voxel(b.raw(ws) / "labelsTr" / "case_000.nii.gz", 40000.0),
             args=("-l", "{ws}/raw/Dataset001_Phantom/labelsTr")),
    evaluate("output-is-file", ("-o", "not a folder"),
             lambda ws: b.text(ws / "repfile", "x"), args=("-o", "{ws}/repfile")),
    evaluate("flags-missing", ("--pred, -r and -o",), base=("--pred", "{ws}/pred"), code=2),
    evaluate("regression-garbage", ("fit.json", "line 1 column 1"), lambda ws: b.text(ws / "fit.json", "?"),
             args=("--regression", "{ws}/fit.json")),
    evaluate("cv-without-validation", ("per_case.csv", "train the folds first"),
             base=("--cv", "-d", "1", "-tr", TRAINER, *ROOTS)),
    # ---------------------------------------------------------------- iterdce_simulate / iterdce_demo
    simulate("zero-cases", ("--num-cases",), args=("-n", "0"), code=2),
    simulate("zero-shape", ("--shape",), args=("--shape", "0", "24", "8"), code=2),
    simulate("zero-jobs", ("-np",), args=("-np", "0"), code=2),
    simulate("folder-not-empty", ("not empty", "--overwrite"), args=("-o", "{ws}/raw/Dataset001_Phantom")),
    simulate("overwrite-foreign-dataset", ("Dataset001_Phantom/dataset.json", "not one of them"),
             args=("-o", "{ws}/raw/Dataset001_Phantom", "--overwrite")),
    simulate("overwrite-user-file", ("notes.txt", "not one of them"),
             lambda ws: b.text(ws / "mine" / "notes.txt", "keep"), args=("-o", "{ws}/mine", "--overwrite")),
    simulate("output-holds-site-profile", ("-o", "not empty"),
             lambda ws: b.text(ws / "prof" / "site.json", '{"base": "A"}'),
             args=("-o", "{ws}/prof", "--site-profile", "{ws}/prof/site.json")),
    simulate("overwrite-holds-site-profile", ("prof/site.json", "not one of them"),
             lambda ws: b.text(ws / "prof" / "site.json", '{"base": "A"}'),
             args=("-o", "{ws}/prof", "--overwrite", "--site-profile", "{ws}/prof/site.json")),
    simulate("output-is-file", ("-o", "not a folder"),
             lambda ws: b.text(ws / "simfile", "x"), args=("-o", "{ws}/simfile")),
    simulate("motion-out-of-range", ("motion",), args=("--motion", "50")),
    simulate("site-profile-garbage", ("site.json", "not valid JSON"), lambda ws: b.text(ws / "site.json", "{"),
             args=("--site-profile", "{ws}/site.json")),
    simulate("site-with-fixed-spacing", ("--spacing", "--site"), args=("--site", "A", "--spacing", "1", "1", "1")),
    Row("import-dicom-input-missing", "import_dicom", ("-i", "{ws}/nothere", "-o", "{ws}/imported", "--quiet"),
        ("nothere",)),
    Row("import-dicom-no-dicom", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}/imported", "--quiet"),
        ("no DICOM images found",)),
    Row("import-dicom-output-not-empty", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}/raw/Dataset001_Phantom"),
        ("not empty", "--overwrite")),
    Row("import-dicom-output-is-input", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}/inputs", "--overwrite"),
        ("-o", "is the DICOM input folder -i")),
    Row("import-dicom-output-holds-input", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}", "--overwrite"),
        ("-o", "holds the DICOM input folder -i")),
    Row("import-dicom-output-inside-input", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}/inputs/sub"),
        ("-o", "lies inside the DICOM input folder -i")),
    Row("import-dicom-output-links-to-input", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}/inlink",
                                                               "--overwrite"),
        ("-o", "is the DICOM input folder -i"), lambda ws: (ws / "inlink").symlink_to(ws / "inputs")),
    Row("import-dicom-overwrite-foreign", "import_dicom",
        ("-i", "{ws}/inputs", "-o", "{ws}/raw/Dataset001_Phantom", "--overwrite"),
        ("Dataset001_Phantom/dataset.json", "not one of them")),
    Row("import-dicom-output-is-file", "import_dicom", ("-i", "{ws}/inputs", "-o", "{ws}/impfile"),
        ("-o", "not a folder"), lambda ws: b.text(ws / "impfile", "x")),
    Row("demo-zero-cases", "demo", ("-o", "{ws}/demo", "-n", "0"), ("--num-cases",), code=2),
    Row("demo-output-is-file", "demo", ("-o", "{ws}/demofile"), ("-o", "not a folder"),
        lambda ws: b.text(ws / "demofile", "x")),
]
