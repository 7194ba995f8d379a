"""Writing phantom cases as DICOM studies with pydicom, independently of iterdce's DICOM code, in the three
conventions scanners use: one series per phase, one series with temporal positions, one enhanced multi-frame
object. Files get random names in nested folders and shuffled InstanceNumbers, so nothing but the geometry
tags can order them.

The voxel (i, j, k) of a NIfTI volume with RAS ``affine`` is column i, row j of slice k, at the LPS position
``diag(-1, -1, 1) @ (affine @ [i, j, k, 1])``.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
SLOPE, INTERCEPT = 0.02, -5.0  # stored = round((value - INTERCEPT) / SLOPE) as uint16: -5 to 1305
PATIENT_NAME = "Phantom^Jane"
BASE_TIME = dt.datetime(2024, 3, 5, 10, 15, 0)


def quantised(image: np.ndarray) -> np.ndarray:
    """The values a reader gets back: stored uint16 * SLOPE + INTERCEPT."""
    return (_stored(image).astype(np.float64) * SLOPE + INTERCEPT).astype(np.float32)


def _stored(volume: np.ndarray) -> np.ndarray:
    stored = np.round((np.asarray(volume, np.float64) - INTERCEPT) / SLOPE)
    assert stored.min() >= 0 and stored.max() <= 65535, "phantom values outside the uint16 range"
    return stored.astype(np.uint16)


def lps_geometry(affine: np.ndarray, n_slices: int) -> tuple[list[float], list[float], list[list[float]]]:
    """ImageOrientationPatient, PixelSpacing (row, column) and ImagePositionPatient of each slice."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    col_step, row_step = lps[:3, 0], lps[:3, 1]
    orientation = list(col_step / np.linalg.norm(col_step)) + list(row_step / np.linalg.norm(row_step))
    spacing = [float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))]
    positions = [list(lps[:3, 3] + k * lps[:3, 2]) for k in range(n_slices)]
    return orientation, spacing, positions


def _tm(stamp: dt.datetime) -> str:
    return stamp.strftime("%H%M%S.%f")


class StudyWriter:
    """One patient study; each ``write_*`` adds the DCE acquisition in one convention under ``root``."""

    def __init__(self, root: Path, patient_id: str, seed: int = 0, bolus_delay_s: float | None = None) -> None:
        self.root, self.patient_id = Path(root), patient_id
        self.study_uid, self.frame_uid = generate_uid(), generate_uid()
        self.rng = np.random.default_rng(seed)
        self.bolus = None if bolus_delay_s is None else BASE_TIME + dt.timedelta(seconds=bolus_delay_s)
        self.series_number = 1
        self.private: list[tuple[int, str, object]] = []  # (tag, VR, value) added to every file
        self.image_type = ["ORIGINAL", "PRIMARY", "M"]

    def _base(self, sop_class: str, series_uid: str, description: str) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = PATIENT_NAME, self.patient_id
        ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = self.study_uid, "20240305", "101000", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "ACC123", "Doctor^Who"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, self.series_number, description
        ds.Modality, ds.Manufacturer, ds.FrameOfReferenceUID = "MR", "Phantom", self.frame_uid
        ds.ImageType = list(self.image_type)
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "3D"
        ds.RepetitionTime, ds.EchoTime, ds.SliceThickness = "4.5", "2.1", "2.0"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if self.bolus is not None:
            ds.ContrastBolusAgent, ds.ContrastBolusStartTime = "Gd", _tm(self.bolus)
        for tag, vr, value in self.private:
            ds.add_new(tag, vr, value)
        return ds

    def _save(self, ds: Dataset) -> Path:
        folder = self.root / f"d{self.rng.integers(1000)}" / f"x{self.rng.integers(1000)}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IM{self.rng.integers(10**9):09d}"
        ds.save_as(path, enforce_file_format=True)
        return path

    def _classic(self, series_uid: str, description: str, volume: np.ndarray, affine: np.ndarray, k: int,
                 when: dt.datetime) -> Dataset:
        orientation, spacing, positions = lps_geometry(affine, volume.shape[2])
        ds = self._base(MR_IMAGE, series_uid, description)
        ds.ImageOrientationPatient, ds.PixelSpacing = [f"{v:.10f}" for v in orientation], spacing
        ds.ImagePositionPatient = [f"{v:.8f}" for v in positions[k]]
        ds.InstanceNumber = int(self.rng.integers(1, 10_000))
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
        ds.AcquisitionTime = ds.ContentTime = _tm(when)
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = SLOPE, INTERCEPT, "US"
        ds.PixelData = np.ascontiguousarray(_stored(volume[:, :, k]).T).tobytes()
        return ds

    def write_series_per_phase(self, image: np.ndarray, affine: np.ndarray, times_s: Sequence[float],
                               skip_slice: tuple[int, int] | None = None) -> list[str]:
        """Convention (a): one series per phase, SeriesTime / AcquisitionTime = BASE_TIME + time.

        ``skip_slice`` (phase, slice) leaves one file out (a broken study)."""
        uids = []
        for phase, (volume, t) in enumerate(zip(image, times_s)):
            series_uid, when = generate_uid(), BASE_TIME + dt.timedelta(seconds=float(t))
            for k in range(volume.shape[2]):
                if skip_slice == (phase, k):
                    continue
                ds = self._classic(series_uid, f"DYN phase {phase}", volume, affine, k, when)
                ds.SeriesTime = _tm(when)
                self._save(ds)
            self.series_number += 1
            uids.append(series_uid)
        return uids

    def write_temporal_series(self, image: np.ndarray, affine: np.ndarray, times_s: Sequence[float],
                              separate_by: str = "TemporalPositionIdentifier") -> str:
        """Convention (b): one series holding every phase.

        ``separate_by``: ``TemporalPositionIdentifier`` (1..P, NumberOfTemporalPositions, TriggerTime in ms, one
        AcquisitionTime for all), ``TriggerTime`` (no identifiers) or ``AcquisitionTime`` (per phase, nothing
        else)."""
        series_uid = generate_uid()
        for phase, (volume, t) in enumerate(zip(image, times_s)):
            when = BASE_TIME + dt.timedelta(seconds=float(t)) if separate_by == "AcquisitionTime" else BASE_TIME
            for k in range(volume.shape[2]):
                ds = self._classic(series_uid, "DYN all phases", volume, affine, k, when)
                ds.SeriesTime = _tm(BASE_TIME)
                if separate_by == "TemporalPositionIdentifier":
                    ds.TemporalPositionIdentifier, ds.NumberOfTemporalPositions = phase + 1, len(times_s)
                if separate_by != "AcquisitionTime":
                    ds.TriggerTime = f"{1000.0 * (float(t) - float(times_s[0])):.1f}"
                self._save(ds)
        self.series_number += 1
        return series_uid

    def write_enhanced(self, image: np.ndarray, affine: np.ndarray, times_s: Sequence[float],
                       temporal_index: bool = True) -> str:
        """Convention (c): one enhanced MR object, frames slice-major with TemporalPositionIndex (unless
        ``temporal_index`` is False) and TemporalPositionTimeOffset."""
        series_uid = generate_uid()
        n_phases, (columns, rows, n_slices) = image.shape[0], image.shape[1:]
        orientation, spacing, positions = lps_geometry(affine, n_slices)
        ds = self._base(ENHANCED_MR, series_uid, "DYN enhanced")
        ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, n_phases * n_slices
        ds.InstanceNumber, ds.ContentDate, ds.ContentTime = 1, "20240305", _tm(BASE_TIME)
        ds.AcquisitionDateTime = BASE_TIME.strftime("%Y%m%d%H%M%S.%f")
        shared = Dataset()
        measures, plane, transform = Dataset(), Dataset(), Dataset()
        measures.PixelSpacing, measures.SliceThickness = spacing, "2.0"
        plane.ImageOrientationPatient = [f"{v:.10f}" for v in orientation]
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = SLOPE, INTERCEPT, "US"
        shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
        shared.PixelValueTransformationSequence = [transform]
        ds.SharedFunctionalGroupsSequence = [shared]
        frames, pixels = [], []
        for k in range(n_slices):
            for phase in range(n_phases):
                when = BASE_TIME + dt.timedelta(seconds=float(times_s[phase]))
                frame, content, position, temporal = Dataset(), Dataset(), Dataset(), Dataset()
                content.DimensionIndexValues = [phase + 1, k + 1]
                if temporal_index:
                    content.TemporalPositionIndex = phase + 1
                content.FrameAcquisitionDateTime = when.strftime("%Y%m%d%H%M%S.%f")
                position.ImagePositionPatient = [f"{v:.8f}" for v in positions[k]]
                temporal.TemporalPositionTimeOffset = float(times_s[phase]) - float(times_s[0])
                frame.FrameContentSequence, frame.PlanePositionSequence = [content], [position]
                frame.TemporalPositionSequence = [temporal]
                frames.append(frame)
                pixels.append(np.ascontiguousarray(_stored(image[phase][:, :, k]).T))
        ds.PerFrameFunctionalGroupsSequence = frames
        ds.PixelData = np.stack(pixels).tobytes()
        self._save(ds)
        self.series_number += 1
        return series_uid


def dcm2niix_binary() -> str | None:
    """The dcm2niix executable (the PyPI package puts it beside the interpreter), or None."""
    beside = Path(sys.executable).parent / "dcm2niix"
    return str(beside) if beside.is_file() else shutil.which("dcm2niix")


def run_dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    """Convert one series folder with dcm2niix (no BIDS sidecar, uncompressed) and load the single result."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([dcm2niix_binary(), "-b", "n", "-z", "n", "-f", "converted", "-o", str(out), str(folder)],
                   check=True, capture_output=True, timeout=60)
    files = sorted(out.glob("converted*.nii"))
    assert len(files) == 1, f"dcm2niix wrote {[f.name for f in files]}"
    return nib.load(files[0])
