"""What a command may remove and where it may write: output folders that never overlap their inputs, whole
datasets assembled beside their destination, and ``--overwrite`` that removes only what the command wrote.

A command that writes a whole dataset folder (iterdce_simulate, iterdce_import_dicom) builds it in a hidden
staging folder beside the destination, lists every file it wrote in ``.iterdce_manifest.json``, and renames
the folder into place at the end. With ``--overwrite`` an existing destination is replaced only when every
file in it is listed in its manifest by the same command; anything else is refused by name, before any work.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from iterdce.core.atomic import process_alive, write_json_atomic
from iterdce.core.errors import IterdceError, OutputLocationError
from iterdce.core.json_io import read_json

MANIFEST_NAME = ".iterdce_manifest.json"


def refuse_overlap(output: Path, output_flag: str, inputs: Iterable[tuple[str, Path | None]]) -> None:
    """``output`` must not be an input folder or file, lie inside one, or hold one (symbolic links resolved);
    ``inputs`` are (flag, path) pairs, None for a flag not given."""
    out = Path(output).resolve()
    for flag, path in inputs:
        if path is None:
            continue
        source = Path(path).resolve()
        if out == source:
            relation = "is"
        elif source in out.parents:
            relation = "lies inside"
        elif out in source.parents:
            relation = "holds"
        else:
            continue
        raise OutputLocationError(f"{output_flag} {output}: {relation} the {flag} {path}; outputs go to a separate "
                                  "folder so that no input can be overwritten or removed", output)


def listed_files(folder: Path, command: str) -> set[str] | None:
    """The files (relative POSIX paths) that ``command`` listed in ``folder``'s manifest; None without one."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        payload = read_json(path, expect=dict)
    except IterdceError:
        return None
    files = payload.get("files")
    if payload.get("written_by") != command or not isinstance(files, list):
        return None
    return {str(f) for f in files}


def first_foreign_file(folder: Path, command: str) -> Path | None:
    """The first entry of ``folder`` (sorted walk) that ``command``'s manifest does not list, else None."""
    owned = listed_files(folder, command) or set()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if relative != MANIFEST_NAME and relative not in owned:
                return path
        for name in dirs:  # symbolic links to folders and other non-files are never the command's
            if (Path(root) / name).is_symlink():
                return Path(root) / name
    return None


def check_replaceable(folder: Path, command: str, overwrite: bool, flag: str = "-o") -> None:
    """An existing non-empty ``folder`` may be replaced only with ``overwrite`` and only when it holds nothing
    but ``command``'s own listed outputs; else one OutputLocationError naming the first foreign file."""
    if folder.exists() and not folder.is_dir():
        raise OutputLocationError(f"{flag} {folder}: exists and is not a folder", folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise OutputLocationError(f"{flag} {folder}: folder is not empty; choose a new folder, or pass --overwrite "
                                  f"to replace a dataset {command} wrote there", folder)
    foreign = first_foreign_file(folder, command)
    if foreign is not None:
        raise OutputLocationError(f"{flag} {folder}: --overwrite replaces only a dataset {command} wrote there "
                                  f"(every file listed in its {MANIFEST_NAME}); {foreign} is not one of them: move "
                                  "it away or choose another folder", folder)


def staging_folder(out_dir: Path) -> Path:
    """The hidden sibling ``out_dir`` is assembled in; stale ones of killed runs are removed first."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")


def write_manifest(folder: Path, command: str) -> None:
    """List every file now in ``folder`` as ``command``'s own (written last, before the folder moves into place)."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    write_json_atomic(folder / MANIFEST_NAME, {"written_by": command, "files": files})


def move_into_place(staging: Path, out_dir: Path, command: str) -> None:
    """Rename the finished ``staging`` folder to ``out_dir``; an existing ``out_dir`` (checked replaceable
    beforehand) is renamed away first and removed only after the new one is in place, and only if it still holds
    nothing but ``command``'s listed files."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        if first_foreign_file(old, command) is None:
            shutil.rmtree(old)
        else:  # something appeared while the command ran: keep it where the user can find it
            print(f"note: {old} kept: it gained files {command} did not write while it ran")
