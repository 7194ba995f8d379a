"""The header facts iterdce reads from a DICOM image, one ``Slice`` per 2D image (a classic instance or one
frame of an enhanced multi-frame object): position, orientation, pixel spacing, rescale, timing tags.

Nothing else is taken from the headers (identifiers are read only to group files and to name cases).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.valuerep import DA, DT, TM

from iterdce.core.errors import IterdceError

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
PHILIPS_SCALE_SLOPE = Tag(0x2005, 0x100E)  # Philips private "MR Scale Slope": not applied (unsupported)


@dataclass
class Slice:
    """One 2D image of a series with the header facts needed to stack, order and time it."""

    path: Path
    frame: int | None  # 0-based frame of an enhanced multi-frame object; None for a classic instance
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient: row direction cosines, then column direction cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    rows: int
    columns: int
    slope: float = 1.0
    intercept: float = 0.0
    temporal_id: int | None = None  # TemporalPositionIdentifier / TemporalPositionIndex
    trigger_ms: float | None = None  # TriggerTime (ms), classic images
    time_offset_s: float | None = None  # TemporalPositionTimeOffset (s), enhanced objects
    acquired: dt.datetime | None = None  # AcquisitionDateTime, or AcquisitionDate + AcquisitionTime
    acquired_tag: str = ""
    bolus_start: dt.datetime | None = None  # ContrastBolusStartTime on the acquisition date
    sop_instance_uid: str = ""
    sop_class_uid: str = ""

    @property
    def normal(self) -> np.ndarray:
        """Slice normal (row x column direction), LPS."""
        return np.cross(self.orientation[:3], self.orientation[3:])


def _date(value: object) -> dt.date | None:
    try:
        return DA(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _time(value: object) -> dt.time | None:
    try:
        return TM(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _datetime(value: object) -> dt.datetime | None:
    try:
        parsed = DT(str(value)) if value not in (None, "") else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if parsed is not None else None


def combine(date: dt.date | None, time: dt.time | None) -> dt.datetime | None:
    """Date and time as one naive datetime (None when the time is missing; a missing date is taken as 1 Jan 2000,
    enough for differences within one study)."""
    if time is None:
        return None
    return dt.datetime.combine(date or dt.date(2000, 1, 1), time.replace(tzinfo=None))


def acquisition_datetime(ds: Dataset) -> tuple[dt.datetime | None, str]:
    """When ``ds`` was acquired, and the tag it came from (AcquisitionDateTime, AcquisitionTime, SeriesTime)."""
    stamp = _datetime(ds.get("AcquisitionDateTime"))
    if stamp is not None:
        return stamp, "AcquisitionDateTime (0008,002A)"
    date = _date(ds.get("AcquisitionDate")) or _date(ds.get("SeriesDate")) or _date(ds.get("StudyDate"))
    stamp = combine(date, _time(ds.get("AcquisitionTime")))
    if stamp is not None:
        return stamp, "AcquisitionTime (0008,0032)"
    stamp = combine(_date(ds.get("SeriesDate")) or _date(ds.get("StudyDate")), _time(ds.get("SeriesTime")))
    return (stamp, "SeriesTime (0008,0031)") if stamp is not None else (None, "")


def bolus_start(ds: Dataset, acquired: dt.datetime | None) -> dt.datetime | None:
    """ContrastBolusStartTime (0018,1042) on the acquisition's date, if the header has it."""
    start = _time(ds.get("ContrastBolusStartTime"))
    if start is None:
        return None
    date = acquired.date() if acquired is not None else _date(ds.get("StudyDate"))
    return combine(date, start)


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _first(sequence_owner: Dataset | None, keyword: str) -> Dataset | None:
    """First item of the sequence ``keyword`` of ``sequence_owner``, or None."""
    if sequence_owner is None:
        return None
    sequence = sequence_owner.get(keyword)
    return sequence[0] if sequence else None


def is_enhanced(ds: Dataset) -> bool:
    """An enhanced (multi-frame, functional-group) image object."""
    return "PerFrameFunctionalGroupsSequence" in ds


class HeaderError(IterdceError, ValueError):
    """A header lacks what a slice needs (position, orientation, spacing); the message names the tag."""


def _geometry(owner: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    try:
        position = np.asarray([float(v) for v in owner.ImagePositionPatient], dtype=np.float64)
        orientation = np.asarray([float(v) for v in owner.ImageOrientationPatient], dtype=np.float64)
        spacing = tuple(float(v) for v in owner.PixelSpacing)
    except (AttributeError, TypeError, ValueError) as exc:
        raise HeaderError(f"{path}: no usable ImagePositionPatient / ImageOrientationPatient / PixelSpacing "
                          f"({exc})") from exc
    if position.shape != (3,) or orientation.shape != (6,) or len(spacing) != 2 or min(spacing) <= 0:
        raise HeaderError(f"{path}: malformed ImagePositionPatient / ImageOrientationPatient / PixelSpacing")
    return position, orientation, (spacing[0], spacing[1])


def classic_slice(ds: Dataset, path: Path) -> Slice:
    """The Slice of a classic single-frame image."""
    position, orientation, spacing = _geometry(ds, path)
    acquired, tag = acquisition_datetime(ds)
    return Slice(
        path=path, frame=None, position=position, orientation=orientation, pixel_spacing=spacing,
        rows=int(ds.Rows), columns=int(ds.Columns),
        slope=_float(ds.get("RescaleSlope")) or 1.0, intercept=_float(ds.get("RescaleIntercept")) or 0.0,
        temporal_id=_int(ds.get("TemporalPositionIdentifier")), trigger_ms=_float(ds.get("TriggerTime")),
        acquired=acquired, acquired_tag=tag, bolus_start=bolus_start(ds, acquired),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")), sop_class_uid=str(ds.get("SOPClassUID", "")),
    )


def _group(frame: Dataset, shared: Dataset | None, keyword: str) -> Dataset | None:
    """A functional group item: per-frame first, else shared."""
    return _first(frame, keyword) or _first(shared, keyword)


def enhanced_slices(ds: Dataset, path: Path) -> list[Slice]:
    """One Slice per frame of an enhanced multi-frame image (functional groups, per-frame over shared)."""
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    series_acquired, series_tag = acquisition_datetime(ds)
    slices = []
    for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        geometry = Dataset()
        for group, keyword in (("PlanePositionSequence", "ImagePositionPatient"),
                               ("PlaneOrientationSequence", "ImageOrientationPatient"),
                               ("PixelMeasuresSequence", "PixelSpacing")):
            item = _group(frame, shared, group)
            if item is not None and keyword in item:
                setattr(geometry, keyword, item.get(keyword))
        position, orientation, spacing = _geometry(geometry, Path(f"{path} frame {index + 1}"))
        content = _group(frame, None, "FrameContentSequence") or Dataset()
        transform = _group(frame, shared, "PixelValueTransformationSequence") or Dataset()
        temporal = _group(frame, shared, "TemporalPositionSequence") or Dataset()
        frame_time = _datetime(content.get("FrameAcquisitionDateTime"))
        acquired, tag = ((frame_time, "FrameAcquisitionDateTime (0018,9074)") if frame_time is not None
                         else (series_acquired, series_tag))
        slices.append(Slice(
            path=path, frame=index, position=position, orientation=orientation, pixel_spacing=spacing,
            rows=int(ds.Rows), columns=int(ds.Columns),
            slope=_float(transform.get("RescaleSlope")) or 1.0,
            intercept=_float(transform.get("RescaleIntercept")) or 0.0,
            temporal_id=_int(content.get("TemporalPositionIndex")),
            time_offset_s=_float(temporal.get("TemporalPositionTimeOffset")),
            acquired=acquired, acquired_tag=tag, bolus_start=bolus_start(ds, acquired),
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")), sop_class_uid=str(ds.get("SOPClassUID", "")),
        ))
    return slices


def philips_private_scale(ds: Dataset) -> bool:
    """Whether the Philips private scale slope (2005,100E) is present (noted, not applied)."""
    if PHILIPS_SCALE_SLOPE in ds:
        return True
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames:
        return False
    return any(PHILIPS_SCALE_SLOPE in item for element in frames[0] if element.VR == "SQ" and element.value
               for item in element.value)
