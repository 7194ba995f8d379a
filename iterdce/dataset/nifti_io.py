"""NIfTI reading and writing that keep shape, affine and qform/sform codes, with clear errors."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from iterdce.core.atomic import atomic_path
from iterdce.core.errors import IterdceError


class ImageReadError(IterdceError, ValueError):
    """A NIfTI file could not be read; the message names the file and the reason."""


@dataclass(frozen=True)
class Geometry:
    """Where an image lives in scanner space: voxel grid shape, affine and the header's qform/sform codes."""

    shape: tuple[int, ...]
    affine: np.ndarray
    qform_code: int = 1
    sform_code: int = 1

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each array axis, from the affine's column norms (mm)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def matches(self, other: Geometry, atol: float = 1e-3) -> bool:
        """Same 3D grid and the same affine within ``atol`` (mm)."""
        return tuple(self.shape[:3]) == tuple(other.shape[:3]) and bool(
            np.allclose(self.affine, other.affine, atol=atol)
        )


def read_header(path: str | os.PathLike[str]) -> tuple[nib.Nifti1Image, Geometry]:
    """Open ``path`` lazily and return the image proxy and its geometry (no voxel data loaded)."""
    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise ImageReadError(f"{path}: cannot be read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageReadError(f"{path}: not a NIfTI image ({type(img).__name__})")
    header = img.header
    pixdim = _stored_pixdim(path, img) if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0 else None
    if pixdim is not None and not (np.all(np.isfinite(pixdim)) and np.all(pixdim > 0)):
        raise ImageReadError(f"{path}: no voxel size (pixdim {pixdim.tolist()}) and no qform or sform: the image "
                             "cannot be placed in space; write it with its spacing and orientation")
    finite = bool(np.all(np.isfinite(img.affine)))
    if not finite or abs(float(np.linalg.det(img.affine[:3, :3]))) < 1e-12:
        raise ImageReadError(f"{path}: its affine is {'singular' if finite else 'not finite'} (voxel size or "
                             "orientation missing): the image cannot be placed in space")
    geometry = Geometry(
        shape=tuple(int(s) for s in img.shape),
        affine=np.asarray(img.affine, dtype=np.float64),
        qform_code=int(header["qform_code"]),
        sform_code=int(header["sform_code"]),
    )
    return img, geometry


def _stored_pixdim(path: Path, img: nib.Nifti1Image | nib.Nifti2Image) -> np.ndarray:
    """The voxel size as stored in the file (nibabel silently replaces a 0 by 1 when it loads a header)."""
    try:
        with nib.openers.ImageOpener(str(path)) as handle:
            raw = type(img.header).from_fileobj(handle, check=False)
    except Exception as exc:  # noqa: BLE001 - a header nibabel loaded once reads again; any failure names the file
        raise ImageReadError(f"{path}: header cannot be read ({type(exc).__name__}: {exc})") from exc
    return np.asarray(raw["pixdim"][1:4], dtype=np.float64)


def read_image(path: str | os.PathLike[str], dtype: type = np.float32) -> tuple[np.ndarray, Geometry]:
    """Load voxel data as ``dtype`` together with its geometry; corrupt files raise ImageReadError."""
    img, geometry = read_header(path)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32 if dtype != np.float64 else np.float64))
    except Exception as exc:
        raise ImageReadError(f"{path}: voxel data cannot be read ({type(exc).__name__}: {exc})") from exc
    return data.astype(dtype, copy=False), geometry


def write_image(
    path: str | os.PathLike[str],
    data: np.ndarray,
    geometry: Geometry | np.ndarray,
    dtype: type | None = None,
    description: str | None = None,
) -> None:
    """Write ``data`` atomically with the affine and qform/sform codes of ``geometry``.

    ``geometry`` may be a bare 4x4 affine (codes default to 1, scanner space); ``description`` goes into the
    header's 80-byte ``descrip`` field (the predictor marks its outputs there).
    """
    if not isinstance(geometry, Geometry):
        geometry = Geometry(shape=tuple(data.shape), affine=np.asarray(geometry, dtype=np.float64))
    array = np.asarray(data if dtype is None else data.astype(dtype))
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, geometry.affine)
    img.set_qform(geometry.affine, code=int(geometry.qform_code))
    img.set_sform(geometry.affine, code=int(geometry.sform_code))
    img.header.set_data_dtype(array.dtype)
    if description is not None:
        img.header["descrip"] = description.encode("ascii")[:80]
    name = Path(path).name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
