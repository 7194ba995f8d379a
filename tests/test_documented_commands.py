"""Every command line shown in README.md and documentation/*.md parses with the real argument parser.

A command line is a line of a fenced code block that starts with an ``iterdce_*`` console script (read from
pyproject.toml's ``[project.scripts]``), ``python benchmarks/X.py`` or ``python -m benchmarks.X`` (with or
without a ``$ `` prompt, environment assignments, ``/usr/bin/time -v`` or a ``.venv/bin/`` prefix; a trailing
backslash joins the next line). Nothing runs: ``ArgumentParser.parse_args`` (and ``parse_known_args``) parse
and then raise a private exception, and ``ArgumentParser.error`` raises one with the parser's message.

Placeholders: ``<anything>`` becomes ``x``; a shell loop variable (``for f in 1 2 3 4; do ... $f``) takes its
first value; ``$(which iterdce_train)`` after ``torchrun`` is the script itself; in a usage synopsis, ``[--opt X]``
loses its brackets and ``A|B`` becomes ``A``. A line with ``...`` elides
arguments: ``...`` is dropped and the parser's arguments are made optional for that line, but an unknown flag
or a bad value still fails.
"""
from __future__ import annotations

import argparse
import importlib
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as a package
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "documentation").glob("*.md"))]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
MODULE_TO_SCRIPT = {target.split(":")[0]: name for name, target in SCRIPTS.items()}

# (document name, start of the command) -> why the line is not parsed. Keep this short.
SKIPPED: dict[tuple[str, str], str] = {}

ELLIPSIS = "..."
PYTHONS = re.compile(r"^(?:\S*/)?python(?:3(?:\.\d+)?)?$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


@dataclass(frozen=True)
class Command:
    document: str
    line_number: int
    text: str
    kind: str  # "script" or "benchmark"
    target: str  # console-script name or benchmark path relative to ROOT
    argv: tuple[str, ...]
    elided: bool

    def __str__(self) -> str:
        return f"{self.document}:{self.line_number}: {self.text}"


class _Parsed(Exception):
    """Raised instead of running the command once its arguments are parsed."""


class _Rejected(Exception):
    """Raised instead of ArgumentParser.error's exit: the parser refused the line."""


def fenced_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, logical line) inside fenced code blocks; a trailing backslash joins the next line."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        stripped = line.strip()
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending = ""


def synopsis(token: str) -> str:
    """A usage synopsis token as a real one: ``[--split`` -> ``--split``, ``Tr|Ts]`` -> ``Tr``."""
    return token.strip("[]").split("|")[0]


def loop_variables(line: str) -> dict[str, str]:
    return {name: first for name, first in re.findall(r"\bfor\s+(\w+)\s+in\s+(\S+)", line)}


def segments(line: str) -> Iterator[str]:
    """The simple commands of a shell line: split on ; && || |, loop keywords removed."""
    for part in re.split(r";|&&|\|\||\s\|\s", line):
        part = part.strip()
        part = re.sub(r"^(?:do|then)\s+", "", part)
        if part and not part.startswith(("for ", "done", "fi")):
            yield part


def classify(tokens: list[str]) -> tuple[str, str, list[str]] | None:
    """(kind, target, argv) of a command, or None when it is not one this test checks."""
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if tokens[:2] == ["/usr/bin/time", "-v"] or tokens[:1] == ["time"]:
        tokens = tokens[2:] if tokens[0] == "/usr/bin/time" else tokens[1:]
    if not tokens:
        return None
    head = tokens[0].rsplit("/", 1)[-1]
    if head in SCRIPTS:
        return "script", head, tokens[1:]
    if head == "torchrun":
        for index, token in enumerate(tokens):
            if token in SCRIPTS:
                return "script", token, tokens[index + 1:]
            if token == "-m" and tokens[index + 1] in MODULE_TO_SCRIPT:
                return "script", MODULE_TO_SCRIPT[tokens[index + 1]], tokens[index + 2:]
        return None
    if PYTHONS.match(tokens[0]) and len(tokens) > 1:
        if tokens[1] == "-m" and len(tokens) > 2 and tokens[2].startswith("benchmarks."):
            return "benchmark", tokens[2].replace(".", "/") + ".py", tokens[3:]
        if tokens[1].startswith("benchmarks/") and tokens[1].endswith(".py"):
            return "benchmark", tokens[1], tokens[2:]
    return None


def documented_commands() -> list[Command]:
    commands = []
    for document in DOCUMENTS:
        for number, line in fenced_lines(document.read_text()):
            line = re.sub(r"^\$\s+", "", line)
            variables = loop_variables(line)
            for segment in segments(line):
                for name, value in variables.items():
                    segment = re.sub(rf"\$\{{?{name}\}}?\b", value, segment)
                segment = re.sub(r"<[^<>]*>", "x", segment)
                segment = re.sub(r"\$\(which (\w+)\)", r"\1", segment)
                try:
                    tokens = shlex.split(segment, comments=True)
                except ValueError:
                    continue
                if not tokens:
                    continue
                found = classify(tokens)
                if found is None:
                    continue
                kind, target, argv = found
                elided = ELLIPSIS in argv or any(t.endswith(ELLIPSIS) for t in argv)
                argv = [synopsis(t) for t in argv if t != ELLIPSIS]
                commands.append(Command(document.name, number, segment, kind, target, tuple(argv), elided))
    return commands


@pytest.fixture
def parse_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every argparse parser stop right after parsing (or refusing) the arguments."""
    depth = [0]  # parse calls in progress (parse_args calls parse_known_args): stop when the outermost returns

    def lenient(parser: argparse.ArgumentParser) -> None:
        if LENIENT:  # a line with "...": what it elides may be required
            for action in parser._actions:
                action.required = False

    def stopping_after(original):  # type: ignore[no-untyped-def]
        def parse(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            lenient(self)
            depth[0] += 1
            try:
                parsed = original(self, args, namespace)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                raise _Parsed(parsed)
            return parsed
        return parse

    def error(self, message):  # type: ignore[no-untyped-def]
        raise _Rejected(f"{self.prog}: {message}")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stopping_after(argparse.ArgumentParser.parse_args))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args",
                        stopping_after(argparse.ArgumentParser.parse_known_args))
    monkeypatch.setattr(argparse.ArgumentParser, "error", error)


LENIENT: list[bool] = []


def parse(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse one command with its real parser; raises _Rejected when the parser refuses it."""
    if command.elided:
        LENIENT.append(True)
    try:
        if command.kind == "script":
            module_name, function = SCRIPTS[command.target].split(":")
            getattr(importlib.import_module(module_name), function)(list(command.argv))
        else:
            path = ROOT / command.target
            assert path.is_file(), f"{command}: no such benchmark {command.target}"
            monkeypatch.setattr(sys, "argv", [str(path), *command.argv])
            monkeypatch.syspath_prepend(str(path.parent))
            monkeypatch.syspath_prepend(str(ROOT))
            runpy.run_path(str(path), run_name="__main__")
    except _Parsed:
        return
    except SystemExit as stop:  # --help and friends
        if stop.code in (0, None):
            return
        raise
    finally:
        LENIENT.clear()
    raise AssertionError(f"{command}: returned without parsing its arguments")


COMMANDS = documented_commands()


def test_the_documents_show_commands() -> None:
    kinds = {c.kind for c in COMMANDS}
    assert kinds == {"script", "benchmark"}, kinds
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.document}:{c.line_number}" for c in COMMANDS])
def test_documented_command_parses(command: Command, parse_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for (document, start), reason in SKIPPED.items():
        if command.document == document and command.text.startswith(start):
            pytest.skip(reason)
    try:
        parse(command, monkeypatch)
    except _Rejected as rejected:
        pytest.fail(f"{command}\n  -> {rejected}")


@pytest.mark.parametrize("line", [
    "iterdce_train 0 -d 1 --no-such-flag",
    "$ iterdce_predict -i early -o out -d 1 \\\n    --precision banana",
    "python benchmarks/bench_train.py --work /tmp/x --no-such-flag",
    "python -m benchmarks.bench_train --work /tmp/x --no-such-flag",
    "iterdce_evaluate ... --no-such-flag",
])
def test_a_wrong_line_fails(line: str, parse_only: None, monkeypatch: pytest.MonkeyPatch,
                            tmp_path: Path) -> None:
    document = tmp_path / "page.md"
    document.write_text(f"```bash\n{line}\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "DOCUMENTS", [document])
    (command,) = documented_commands()
    with pytest.raises(_Rejected):
        parse(command, monkeypatch)


def test_a_right_line_passes(parse_only: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    document = tmp_path / "page.md"
    document.write_text("```\nfor f in 1 2; do iterdce_train $f -d 1; done   # folds\n"
                        "MALLOC_MMAP_MAX_=0 python benchmarks/bench_train.py --work <dir> \\\n  --json x.json\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "DOCUMENTS", [document])
    commands = documented_commands()
    assert [c.argv for c in commands] == [("1", "-d", "1"), ("--work", "x", "--json", "x.json")]
    for command in commands:
        parse(command, monkeypatch)
