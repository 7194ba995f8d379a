"""Case ids for imported studies and the import report (``import_report.csv``).

Without ``--keep-ids`` a case id is ``case_`` plus the first 12 hex digits of SHA-256 of (salt + the
identifier), so re-importing the same study gives the same id, and the report names studies only by that id
and by SeriesNumber: no header text but times and geometry reaches the dataset folder.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from iterdce.core.atomic import write_atomic
from iterdce.dicom.phases import Acquisition
from iterdce.dicom.scan import Study

CASE_ID_SOURCES = ("StudyInstanceUID", "PatientID")
REPORT_NAME = "import_report.csv"
COLUMNS = ("case", "status", "convention", "series", "phases", "times_s", "time_tags", "time_reference",
           "skipped", "notes", "study_uid", "folder")


def case_id_for(study: Study, source: str = "StudyInstanceUID", keep_ids: bool = False, salt: str = "") -> str:
    """The case id of a study: a stable hash of its StudyInstanceUID or PatientID, or the value itself with
    ``keep_ids`` (characters other than letters, digits, ``.`` and ``-`` become ``-``)."""
    if source not in CASE_ID_SOURCES:
        raise ValueError(f"--case-id-from must be one of {', '.join(CASE_ID_SOURCES)}, got {source!r}")
    value = study.uid if source == "StudyInstanceUID" else study.patient_id
    if not value:
        raise ValueError(f"the study has no {source}")
    if keep_ids:
        return re.sub(r"[^A-Za-z0-9.\-]", "-", value)
    return "case_" + hashlib.sha256((salt + value).encode("utf-8")).hexdigest()[:12]


@dataclass
class StudyRow:
    """One line of the report: what happened to one study."""

    case: str
    status: str  # imported / skipped
    acquisition: Acquisition | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    study_uid: str = ""
    folder: str = ""
    source: str = ""  # the study's folder, printed on the terminal and never written to the report

    def as_dict(self) -> dict[str, str]:
        acq = self.acquisition
        series = ";".join(str(s.number) for s in acq.series) if acq else ""
        return {
            "case": self.case, "status": self.status,
            "convention": acq.convention if acq else "",
            "series": series,
            "phases": str(len(acq.stacks)) if acq else "",
            "times_s": ";".join(f"{t:g}" for t in acq.times_s) if acq else "",
            "time_tags": ";".join(dict.fromkeys(acq.time_tags)) if acq else "",
            "time_reference": acq.time_reference if acq else "",
            "skipped": "; ".join(f"{label}: {reason}" for label, reason in self.skipped),
            "notes": "; ".join(self.notes),
            "study_uid": self.study_uid, "folder": self.folder,
        }


def write_report(path: Path, rows: list[StudyRow]) -> None:
    """``import_report.csv``, one row per study, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    write_atomic(path, lambda tmp: tmp.write_text(buffer.getvalue()))
