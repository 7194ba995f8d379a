"""Walking a DICOM tree: every file, any nesting and name (DICOMDIR optional and not needed), read without
pixel data and grouped by study and series."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from tqdm import tqdm

from iterdce.dicom.headers import HeaderError, Slice, classic_slice, enhanced_slices, is_enhanced, philips_private_scale

MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass
class Series:
    """The images of one SeriesInstanceUID and the header of its first file (kept as the export template)."""

    uid: str
    number: int | None
    description: str
    image_type: tuple[str, ...]
    header: Dataset
    enhanced: bool = False
    slices: list[Slice] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    philips_scale: bool = False

    @property
    def derived(self) -> bool:
        """ImageType starts with DERIVED (reformats, iterdce's own synthetic series) or names a subtraction."""
        values = [v.upper() for v in self.image_type]
        return bool(values) and (values[0] == "DERIVED" or any(v.startswith("SUB") for v in values))

    @property
    def label(self) -> str:
        """How the series is named in reports: its SeriesNumber (header text only with ``describe``)."""
        return f"series {self.number}" if self.number is not None else "series (no number)"


@dataclass
class Study:
    """The series of one StudyInstanceUID."""

    uid: str
    patient_id: str
    series: dict[str, Series] = field(default_factory=dict)
    folders: set[Path] = field(default_factory=set)

    @property
    def folder(self) -> Path:
        """The deepest folder holding every file of the study."""
        parts = [p.parts for p in self.folders]
        common = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        return Path(*common) if common else Path(".")


@dataclass
class ScanResult:
    """Studies found under a root, files that are not DICOM images, and files that could not be used."""

    studies: dict[str, Study]
    not_dicom: list[Path] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)


def _read(path: Path) -> Dataset | None:
    try:
        return dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def _add(result: ScanResult, path: Path, ds: Dataset) -> None:
    study_uid, series_uid = ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID")
    if not study_uid or not series_uid:
        result.unusable.append(f"{path}: no StudyInstanceUID / SeriesInstanceUID")
        return
    study = result.studies.setdefault(str(study_uid), Study(str(study_uid), str(ds.get("PatientID", ""))))
    study.folders.add(path.parent)
    series = study.series.get(str(series_uid))
    if series is None:
        number = ds.get("SeriesNumber")
        series = Series(uid=str(series_uid), number=int(number) if number not in (None, "") else None,
                        description=str(ds.get("SeriesDescription", "")),
                        image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
                        header=ds, enhanced=is_enhanced(ds))
        study.series[series.uid] = series
    series.files.append(path)
    series.philips_scale = series.philips_scale or philips_private_scale(ds)
    try:
        series.slices += enhanced_slices(ds, path) if is_enhanced(ds) else [classic_slice(ds, path)]
    except HeaderError as exc:
        series.problems.append(str(exc))


def scan_tree(root: Path, progress: bool = True) -> ScanResult:
    """Read the header of every file under ``root`` and group the images by study and series."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: DICOM folder does not exist")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    result = ScanResult(studies={})
    for path in tqdm(paths, desc="reading DICOM headers", unit="file", disable=not progress):
        ds = _read(path)
        if ds is None:
            result.not_dicom.append(path)
            continue
        sop_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ds.get("SOPClassUID", "")))
        if sop_class == MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds or "Rows" not in ds:
            continue  # DICOMDIR and non-image objects (reports, presentation states)
        _add(result, path, ds)
    return result
