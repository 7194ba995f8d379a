"""``iterdce_import_dicom -i DICOM_ROOT -o $ITERDCE_RAW/DatasetNNN_Name``: DCE studies from DICOM as a raw dataset,
with per-case phase times from the headers, anonymised case ids and an import report."""
from __future__ import annotations

import sys

from iterdce.commands.common import add_quiet_argument, new_parser, run_guarded
from iterdce.core.output_checks import require_writable_folder
from iterdce.dicom.importer import ImportSettings, import_dicom
from iterdce.dicom.report import CASE_ID_SOURCES, REPORT_NAME


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_import_dicom", __doc__,
                        "iterdce_import_dicom -i /data/dicom -o iterdce_data/raw/Dataset010_Duke")
    parser.add_argument("-i", "--input", required=True, help="folder tree of DICOM files (any nesting and names)")
    parser.add_argument("-o", "--output", required=True, help="raw dataset folder to create, e.g. "
                        "$ITERDCE_RAW/Dataset010_Duke")
    parser.add_argument("--case-id-from", default="StudyInstanceUID", choices=CASE_ID_SOURCES,
                        help="identifier a case id is made from (default StudyInstanceUID)")
    parser.add_argument("--keep-ids", action="store_true",
                        help="case ids are the identifiers themselves, and the report names study UIDs and folders "
                             "(default: stable hashes, nothing identifying in the dataset)")
    parser.add_argument("--salt", default="", help="text mixed into the case-id hash (keep it secret and reuse it "
                        "for stable ids that cannot be recomputed from the identifier alone)")
    parser.add_argument("--include-derived", action="store_true",
                        help="let DERIVED series (e.g. iterdce's synthetic phases) be phases of the acquisition")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder when done")
    add_quiet_argument(parser)
    args = parser.parse_args(argv)
    settings = ImportSettings(args.case_id_from, args.keep_ids, args.include_derived, args.salt, args.overwrite,
                              progress=not args.quiet)

    def body() -> int:
        require_writable_folder(args.output, "-o")
        summary = import_dicom(args.input, args.output, settings)
        for row in summary.skipped:
            print(f"skipped {row.case or 'a study'} ({row.source}): {row.notes[0] if row.notes else ''}",
                  file=sys.stderr)
        print(f"imported {len(summary.cases)} case(s) into {summary.dataset_dir} "
              f"({len(summary.skipped)} study(ies) skipped; see {summary.dataset_dir / REPORT_NAME})")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
