"""Reading the voxels of a stack of slices with RescaleSlope / RescaleIntercept applied (float32)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread

from iterdce.core.errors import IterdceError
from iterdce.dicom.geometry import Stack


class VolumeError(IterdceError, ValueError):
    """Pixel data that cannot be read or decoded; the message names the file."""


def _pixels(path: Path) -> np.ndarray:
    try:
        ds = dcmread(path)
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise VolumeError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise VolumeError(f"{path}: {ds.SamplesPerPixel} samples per pixel; a greyscale image is expected")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # undecodable pixel data: missing codec, truncated file
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "unknown")
        raise VolumeError(f"{path}: pixel data cannot be read (transfer syntax {syntax}: "
                          f"{type(exc).__name__}: {exc})") from exc


def read_volume(stack: Stack) -> np.ndarray:
    """Voxels [columns, rows, slices] of ``stack`` in the real-world scale (stored * slope + intercept)."""
    volume = np.empty(stack.shape, dtype=np.float32)
    frames: dict[Path, np.ndarray] = {}
    for k, item in enumerate(stack.slices):
        if item.frame is None:
            pixels = _pixels(item.path)
        else:
            if item.path not in frames:
                frames[item.path] = _pixels(item.path).reshape(-1, item.rows, item.columns)
            pixels = frames[item.path][item.frame]
        if pixels.shape != (item.rows, item.columns):
            raise VolumeError(f"{item.path}: pixel data of shape {pixels.shape}, the header says "
                              f"{item.rows} x {item.columns}")
        volume[:, :, k] = (pixels.astype(np.float64) * item.slope + item.intercept).T
    return volume
