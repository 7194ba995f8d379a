"""The files of one preprocessed case: ``<case>.npz`` (arrays) and ``<case>.json`` (properties, written last).

The sidecar records the archive's size and SHA-256, so a truncated or altered archive is found before
training starts (size and zip directory, cheap) and when a case is loaded (checksum of the bytes read).
The archive is written with fixed zip timestamps, so the same case always gives the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iterdce.core.errors import CorruptFileError, IterdceError, listing
from iterdce.core.file_names import archive_name, sidecar_name
from iterdce.core.folder_names import PLANS_DATA_SUFFIX
from iterdce.core.json_io import read_json
from iterdce.preprocessing.case_properties import CaseSidecar

NPZ_KEYS = ("data", "lesion", "mask")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, object]:
    """Write ``arrays`` as an uncompressed .npz with fixed timestamps; returns ``npz_size`` and ``npz_sha256``."""
    with open(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return npz_digest(path)


def npz_digest(path: Path) -> dict[str, object]:
    """Size and SHA-256 of a file, as stored in the case sidecar."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"npz_size": Path(path).stat().st_size, "npz_sha256": digest.hexdigest()}


def _array_headers(archive: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an .npz, read from the headers only (no voxel data)."""
    headers = {}
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            with zipped.open(name) as member:
                major, _ = np.lib.format.read_magic(member)
                reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = reader(member)
            headers[name.removesuffix(".npy")] = (tuple(shape), dtype)
    return headers


def case_problem(folder: Path, case_id: str, checksum: bool = False) -> str | None:
    """What is wrong with a preprocessed case's two files (None: both present, consistent and complete as far
    as size, zip directory and array headers show; with ``checksum`` also the SHA-256 of every byte)."""
    sidecar, archive = folder / sidecar_name(case_id), folder / archive_name(case_id)
    if not sidecar.is_file():
        return f"{sidecar}: missing"
    if not archive.is_file():
        return f"{archive}: missing"
    try:
        record = read_sidecar(folder, case_id)
    except IterdceError as exc:
        return str(exc)
    size = archive.stat().st_size
    if record.npz_size is not None and size != record.npz_size:
        return f"{archive}: {size} bytes, but {sidecar.name} records {record.npz_size} (truncated or altered)"
    try:
        headers = _array_headers(archive)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return f"{archive}: not a readable .npz archive ({type(exc).__name__}: {exc})"
    if any(k not in headers for k in NPZ_KEYS) or headers["data"][1] != np.float32:
        return f"{archive}: does not hold float32 'data', 'lesion' and 'mask' arrays"
    spatial = record.properties.resampled_shape
    if headers["data"][0][1:] != spatial or any(headers[k][0] != spatial for k in ("lesion", "mask")):
        return f"{archive}: array shapes differ from resampled_shape {list(spatial)} in {sidecar.name}"
    if checksum and record.npz_sha256 is not None and npz_digest(archive)["npz_sha256"] != record.npz_sha256:
        return f"{archive}: checksum differs from the one in {sidecar.name} (altered after it was written)"
    return None


def regenerate_hint(folder: Path) -> str:
    """The command that rewrites the bad cases of a ``<plans>_data`` folder (finished cases are kept)."""
    plans_name = folder.name.removesuffix(PLANS_DATA_SUFFIX)
    extra = "" if plans_name == "plans" else f" --plans-name {plans_name}"
    return f"regenerate with: iterdce_plan_and_preprocess -d {folder.parent.name}{extra}"


def verify_cases(folder: Path, case_ids: list[str], progress: bool = True) -> None:
    """Every case of ``case_ids`` is complete and matches its checksum; else one CorruptFileError listing each
    bad file (with the command that regenerates them)."""
    checked = (case_problem(folder, c, checksum=True)
               for c in tqdm(case_ids, desc="checking preprocessed cases", unit="case", disable=not progress))
    problems = [p for p in checked if p is not None]
    if problems:
        raise CorruptFileError(listing(f"{folder}: preprocessed cases unusable", problems)
                               + f"\n{regenerate_hint(folder)}", folder)


def read_sidecar(folder: Path, case_id: str) -> CaseSidecar:
    """The typed ``<case>.json`` of a preprocessed case; CorruptFileError names the file and the bad key."""
    path = folder / sidecar_name(case_id)
    try:
        return CaseSidecar.from_dict(read_json(path, expect=dict))
    except ValueError as exc:
        raise CorruptFileError(f"{path}: {exc}; {regenerate_hint(folder)}", path) from exc


def read_case_arrays(folder: Path, case_id: str) -> tuple[dict[str, np.ndarray], CaseSidecar]:
    """The arrays and sidecar of a case; the archive's bytes are checked against the sidecar's checksum."""
    sidecar, archive = folder / sidecar_name(case_id), folder / archive_name(case_id)
    record = read_sidecar(folder, case_id)
    try:
        raw = archive.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"{archive}: cannot be read ({exc.strerror or exc}); {regenerate_hint(folder)}",
                               archive) from exc
    expected = record.npz_sha256
    if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
        raise CorruptFileError(f"{archive}: checksum differs from {sidecar.name} (truncated or altered); "
                               f"{regenerate_hint(folder)}", archive)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(f"{archive}: not a readable .npz archive ({type(exc).__name__}); "
                               f"{regenerate_hint(folder)}", archive) from exc
    return arrays, record


@dataclass
class CaseArrays:
    """One preprocessed case: phases [P, X, Y, Z], lesion and mask [X, Y, Z], phase times [P], plus what
    patch extraction needs every time (computed once per load, not per sample)."""

    data: np.ndarray
    lesion: np.ndarray
    mask: np.ndarray
    times_s: np.ndarray
    lesion_voxels: np.ndarray
    fill: np.ndarray  # per-phase minimum, the value outside the volume
    seg: np.ndarray  # [2, X, Y, Z] float32: lesion > 0 and mask, cropped alongside the phases
    spacing_mm: tuple[float, ...] = ()  # the grid's voxel size (the plan's spacing)


def load_preprocessed(folder: Path, case_id: str) -> CaseArrays:
    """Read ``<case>.npz`` and its sidecar (no pickles; the archive's checksum is verified)."""
    arrays, record = read_case_arrays(Path(folder), case_id)
    data, lesion, mask = arrays["data"], arrays["lesion"], arrays["mask"]
    times = record.properties.phase_times_s
    fill = data.reshape(data.shape[0], -1).min(axis=1)
    seg = np.stack([(lesion > 0).astype(np.float32), mask.astype(np.float32)])
    return CaseArrays(data, lesion, mask, np.asarray(times, np.float32), np.argwhere(lesion > 0), fill, seg,
                      tuple(float(v) for v in record.properties.target_spacing))
