"""Writing a volume as a derived DICOM MR series on the grid of an input series.

The series belongs to the input's patient and study (those modules are copied from the template header), gets
new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY``, the slice positions, orientation and pixel
spacing of the template slices, and references the source images of each slice (SourceImageSequence). Values
are stored as uint16 with a RescaleSlope / RescaleIntercept spanning the volume's range, so nothing is clipped
and the error is at most half a slope.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DS, DSfloat

from iterdce.dicom.geometry import Stack

MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
STORED_MAX = 65535
COPIED = (  # patient, study, frame of reference and acquisition context of the template
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientWeight", "PatientSize", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator", "BodyPartExamined",
    "PatientPosition", "Laterality", "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime", "FlipAngle", "MagneticFieldStrength",
    "ImagingFrequency", "ImagedNucleus", "SliceThickness", "ContrastBolusAgent", "ContrastBolusRoute",
    "ContrastBolusStartTime", "ContrastBolusVolume",
)
REQUIRED_DEFAULTS = {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "",
                     "EchoTime": "", "EchoTrainLength": "", "RepetitionTime": "", "PatientName": "",
                     "PatientID": "", "PatientBirthDate": "", "PatientSex": "", "StudyDate": "", "StudyTime": "",
                     "StudyID": "", "AccessionNumber": "", "ReferringPhysicianName": "",
                     "PositionReferenceIndicator": ""}


@dataclass
class DerivedSeries:
    """What to write: the volume in the template's voxel order and how the series describes itself."""

    volume: np.ndarray  # [columns, rows, slices] of the template stack
    description: str  # SeriesDescription (64 characters at most)
    series_number: int
    derivation: str  # DerivationDescription
    acquired: dt.datetime | None = None  # the time the phase stands for (None: no AcquisitionTime, e.g. a map)
    integer_codes: bool = False  # store the values as they are (slope 1, intercept 0): a label map


def rescale(volume: np.ndarray, integer_codes: bool = False) -> tuple[np.ndarray, float, float]:
    """uint16 stored values, slope and intercept with stored * slope + intercept ~= volume, no clipping."""
    if integer_codes:
        if volume.min() < 0 or volume.max() > STORED_MAX or not np.array_equal(volume, np.round(volume)):
            raise ValueError("a code map must hold integers from 0 to 65535")
        return volume.astype(np.uint16), 1.0, 0.0
    low, high = float(volume.min()), float(volume.max())
    intercept = float(DSfloat(low, auto_format=True))
    slope = float(DSfloat(max((high - intercept) / (STORED_MAX - 1), 1e-6), auto_format=True))
    stored = np.clip(np.round((volume.astype(np.float64) - intercept) / slope), 0, STORED_MAX)
    return stored.astype(np.uint16), slope, intercept


def _da_tm(stamp: dt.datetime) -> tuple[str, str]:
    return stamp.strftime("%Y%m%d"), stamp.strftime("%H%M%S.%f")


def _source_references(sources: Sequence[Stack], k: int) -> list[Dataset]:
    items = []
    for stack in sources:
        image = stack.slices[k]
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = image.sop_class_uid, image.sop_instance_uid
        if image.frame is not None:
            item.ReferencedFrameNumber = image.frame + 1
        items.append(item)
    return items


def _series_header(template: Dataset, series: DerivedSeries, now: dt.datetime, versions: str | Sequence[str]
                   ) -> Dataset:
    ds = Dataset()
    for keyword in COPIED:
        element = template.data_element(keyword) if keyword in template else None
        if element is not None:
            setattr(ds, keyword, element.value)
    for keyword, value in REQUIRED_DEFAULTS.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    ds.SOPClassUID, ds.Modality = MR_IMAGE_STORAGE, "MR"
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), series.series_number
    ds.SeriesDescription = series.description[:64]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = series.derivation[:1024]
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "iterdce", "iterdce", (
        versions if isinstance(versions, str) else list(versions))
    ds.ContentDate, ds.ContentTime = _da_tm(now)
    ds.InstanceCreationDate, ds.InstanceCreationTime = _da_tm(now)
    if series.acquired is not None:
        ds.SeriesDate, ds.SeriesTime = _da_tm(series.acquired)
        ds.AcquisitionDate, ds.AcquisitionTime = _da_tm(series.acquired)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    return ds


def write_derived_series(folder: Path, series: DerivedSeries, template: Stack, template_header: Dataset,
                         sources: Sequence[Stack], versions: str | Sequence[str]) -> Path:
    """Write ``series`` as one file per slice into ``folder`` (created whole or not at all)."""
    if tuple(series.volume.shape) != template.shape:
        raise ValueError(f"volume of shape {series.volume.shape} for a template of shape {template.shape}")
    stored, slope, intercept = rescale(series.volume, series.integer_codes)
    header = _series_header(template_header, series, dt.datetime.now(), versions)
    values = stored.astype(np.float64) * slope + intercept
    low, high = np.percentile(values, [1, 99]) if not series.integer_codes else (0.0, 3.0)
    first = template.slices[0]
    normal = first.normal
    step = float(np.linalg.norm(template.affine[:3, 2]))
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if "SliceThickness" not in header:  # enhanced templates keep it in their functional groups
        header.SliceThickness = DS(step, auto_format=True)
    try:
        for k, image in enumerate(template.slices):
            ds = Dataset()
            ds.update(header)
            ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), k + 1
            ds.ImagePositionPatient = [DS(float(v), auto_format=True) for v in image.position]
            ds.ImageOrientationPatient = [DS(float(v), auto_format=True) for v in first.orientation]
            ds.PixelSpacing = [DS(float(v), auto_format=True) for v in first.pixel_spacing]
            ds.SliceLocation = DS(float(image.position @ normal), auto_format=True)
            ds.SpacingBetweenSlices = DS(step, auto_format=True)
            ds.Rows, ds.Columns = template.shape[1], template.shape[0]
            ds.RescaleSlope, ds.RescaleIntercept = DS(slope, auto_format=True), DS(intercept, auto_format=True)
            ds.RescaleType = "US"
            ds.WindowCenter = DS((low + high) / 2, auto_format=True)
            ds.WindowWidth = DS(max(high - low, 1.0), auto_format=True)
            ds.SourceImageSequence = _source_references(sources, k)
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(staging / f"IM_{k + 1:04d}.dcm", enforce_file_format=True)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder
