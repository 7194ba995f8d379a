"""Small functions that break one thing in a copied workspace (``ws``) before a matrix row runs."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from iterdce.core.file_names import MODEL_MANIFEST
from iterdce.dataset.nifti_io import read_image, write_image
from iterdce.sharing.package import manifest
from tests.bad_inputs.workspace import DATASET, TRAINER

LONG_ID = "c" * 240


def raw(ws: Path) -> Path:
    return ws / "raw" / DATASET


def prep(ws: Path) -> Path:
    return ws / "preprocessed" / DATASET


def model(ws: Path) -> Path:
    return ws / "results" / DATASET / f"{TRAINER}__plans"


def image(ws: Path, case: str = "case_001", phase: int = 2) -> Path:
    return raw(ws) / "imagesTr" / f"{case}_{phase:04d}.nii.gz"


def text(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def set_voxel(path: Path, value: float) -> None:
    data, geometry = read_image(path)
    data[3, 3, 3] = value
    write_image(path, data, geometry)


def make_constant(path: Path) -> None:
    data, geometry = read_image(path)
    write_image(path, np.full_like(data, 7.0), geometry)


def reshape(path: Path, shape: tuple[int, ...]) -> None:
    _, geometry = read_image(path)
    write_image(path, np.ones(shape, np.float32), geometry.affine)


def shift_affine(path: Path) -> None:
    data, geometry = read_image(path)
    affine = geometry.affine.copy()
    affine[0, 3] += 25.0
    write_image(path, data, affine)


def scale(path: Path, factor: float) -> None:
    data, geometry = read_image(path)
    write_image(path, data * factor, geometry)


def not_gzip(path: Path) -> None:
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))


def edit_json(path: Path, **changes) -> None:
    payload = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    path.write_text(json.dumps(payload))


def long_case(folder: Path, phases: range) -> None:
    """A case whose id is 240 characters long (written without temporaries: the name itself still fits)."""
    source = folder / "case_000_0000.nii.gz"
    for phase in phases:
        shutil.copyfile(source, folder / f"{LONG_ID}_{phase:04d}.nii.gz")


class Evil:
    """A pickled object that would run code on loading."""

    def __reduce__(self):
        return (print, ("pwned",))


def malicious_checkpoint(path: Path) -> None:
    torch.save({"network_state": Evil(), "model_config": {}}, path)


def misfit_checkpoint(path: Path) -> None:
    """Weights that do not fit the checkpoint's own model_config (one tensor dropped, one widened)."""
    payload = torch.load(path, weights_only=True)
    state = payload["network_state"]
    first, second = list(state)[:2]
    state.pop(first)
    state[second] = torch.zeros(tuple(s + 3 for s in state[second].shape))
    torch.save(payload, path)


def foreign_mark(path: Path) -> None:
    """Rewrite a prediction as if another model had written it."""
    data, geometry = read_image(path)
    write_image(path, data, geometry, description="iterdce-predict model 0000000000000000")


def four_d(path: Path) -> None:
    _, geometry = read_image(path)
    nib.save(nib.Nifti1Image(np.ones((24, 24, 8, 2), np.float32), geometry.affine), str(path))


def no_spacing(path: Path) -> None:
    """Rewrite an image with voxel size 0 and neither qform nor sform (nothing places it in space)."""
    data, _ = read_image(path)
    img = nib.Nifti1Image(data, None)
    img.header["pixdim"][1:4] = 0.0
    img.header["qform_code"], img.header["sform_code"] = 0, 0
    nib.save(img, str(path))


def nan_affine(path: Path) -> None:
    """Rewrite an image whose sform holds a NaN."""
    data, geometry = read_image(path)
    affine = geometry.affine.copy()
    affine[0, 3] = np.nan
    img = nib.Nifti1Image(data, affine)
    img.set_qform(None, code=0)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def replace_with(path: Path, kind: str) -> None:
    """Put a folder, a named pipe or a symbolic-link loop where the file ``path`` was."""
    path.unlink()
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path.name)  # points at itself


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite_zip(path: Path, change: Callable[[dict[str, bytes]], None], refresh_manifest: bool = True,
                extra: zipfile.ZipInfo | None = None) -> None:
    """Rewrite a shared-model zip after ``change`` edits its members (the manifest recomputed unless told not to,
    so that only the change itself is wrong); ``extra``: one more raw member (its bytes: its file name's target)."""
    files = zip_members(path)
    change(files)
    if refresh_manifest:
        files.pop(MODEL_MANIFEST, None)
        files[MODEL_MANIFEST] = (json.dumps(manifest(files)) + "\n").encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        if extra is not None:
            archive.writestr(extra, b"/etc/passwd")


def zip_with_member(path: Path, name: str, symlink: bool = False) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = ((stat.S_IFLNK | 0o777) if symlink else (stat.S_IFREG | 0o644)) << 16
    rewrite_zip(path, lambda files: None, refresh_manifest=False, extra=info)


def zip_plans_version(path: Path, version: int) -> None:
    def change(files: dict[str, bytes]) -> None:
        plans = json.loads(files["plans.json"])
        plans["version"] = version
        files["plans.json"] = json.dumps(plans).encode()
    rewrite_zip(path, change)


def zip_pickled_checkpoint(path: Path, tmp: Path) -> None:
    malicious_checkpoint(tmp)
    rewrite_zip(path, lambda files: files.update({"fold_0/checkpoint_final.pth": tmp.read_bytes()}))
    tmp.unlink()
