"""Results of a conformance run and their reports: terminal table, JSON, JUnit XML.

Verdicts follow Autobahn's scheme, mapped onto the levels of spec 1.1:

========== ============================================================ =====================
verdict    meaning                                                      fails the run?
========== ============================================================ =====================
PASS       the requirement holds                                        no
FAIL       a MUST requirement does not hold, or the case timed out      yes
NON-STRICT a SHOULD requirement does not hold                           no
INFO       a MAY case: the report says what the implementation does     no
SKIP       the case could not run here (option not given, transport)    no
NOT-RUN    the run stopped before the case (the server stopped answering) yes
ERROR      the kit itself broke (a bug in the kit: please report it)    yes
========== ============================================================ =====================

The terminal report prints one row per case as it finishes (id, section, level, verdict); a
FAIL, NON-STRICT or ERROR row is followed by the requirement quoted from the spec (the one that
failed: a refused frame breaks spec 2.2 whatever the case checks), Expected / Actual (h2spec's
layout) and the last frames exchanged. A summary line ends the report: ``N passed, N failed,
N skipped`` and, when there are any, the non-strict, informational, not-run and error counts.
`exit_status` is 1 when any MUST requirement failed, a case errored or was not run, else 0.
"""

from __future__ import annotations

import enum
import json
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from chatwire import __version__

from .registry import Case, Requirement

__all__ = [
    "Result",
    "Run",
    "Verdict",
    "exit_status",
    "format_result",
    "summary_line",
    "write_json",
    "write_junit",
]


class Verdict(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NON_STRICT = "NON-STRICT"
    INFO = "INFO"
    SKIP = "SKIP"
    NOT_RUN = "NOT-RUN"
    ERROR = "ERROR"


@dataclass
class Result:
    """The outcome of one case."""

    case: Case
    verdict: Verdict
    duration: float = 0.0
    expected: str = ""
    actual: str = ""
    #: An observation (INFO), the reason of a SKIP, or a remark on a PASS.
    note: str = ""
    #: The last frames exchanged, as trace lines (kept for failures).
    frames: list[str] = field(default_factory=list)
    #: The requirement that failed, when it is not the case's own (a refused frame: spec 2.2).
    failed: Requirement | None = None
    #: The case failed without a single byte or close from the server (see the runner).
    silent: bool = field(default=False, repr=False)

    @property
    def requirement(self) -> Requirement:
        """The requirement this result is about: the one that failed, else the case's."""
        if self.failed is not None:
            return self.failed
        return Requirement(self.case.section, self.case.requirement)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "section": self.case.section,
            "also": list(self.case.also),
            "level": self.case.level.value,
            "title": self.case.title,
            "requirement": self.requirement.text,
            "requirement_section": self.requirement.section,
            "verdict": self.verdict.value,
            "duration": round(self.duration, 3),
            "expected": self.expected,
            "actual": self.actual,
            "note": self.note,
            "frames": self.frames,
        }


@dataclass
class Run:
    """A whole run: what was tested, when, and the results in order."""

    mode: str  # "server" or "client"
    target: str  # the server's URL, or where the kit listened for a client
    results: list[Result] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    duration: float = 0.0

    @property
    def stopped(self) -> str:
        """Why the run stopped before its last case ("" if it did not): the cases left are
        NOT-RUN results, each noting the reason."""
        return next((r.note for r in self.results if r.verdict is Verdict.NOT_RUN), "")

    def counts(self) -> Counter[Verdict]:
        return Counter(result.verdict for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "tool": "chatwire-conformance",
            "version": __version__,
            "mode": self.mode,
            "target": self.target,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "duration": round(self.duration, 3),
            "summary": {verdict.value: counts.get(verdict, 0) for verdict in Verdict},
            "passed": exit_status(self.results) == 0,
            "stopped": self.stopped,
            "results": [result.as_dict() for result in self.results],
        }


def exit_status(results: Sequence[Result]) -> int:
    """1 if a MUST requirement failed, the kit errored or a case was not run, else 0."""
    bad = any(r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NOT_RUN) for r in results)
    return 1 if bad else 0


def summary_line(results: Sequence[Result]) -> str:
    """``N passed, N failed, N skipped``, then the other verdicts that occurred."""
    counts = Counter(result.verdict for result in results)
    parts = [
        f"{counts[Verdict.PASS]} passed",
        f"{counts[Verdict.FAIL]} failed",
        f"{counts[Verdict.SKIP]} skipped",
    ]
    if counts[Verdict.NON_STRICT]:
        parts.append(f"{counts[Verdict.NON_STRICT]} non-strict")
    if counts[Verdict.INFO]:
        parts.append(f"{counts[Verdict.INFO]} informational")
    if counts[Verdict.NOT_RUN]:
        parts.append(f"{counts[Verdict.NOT_RUN]} not run")
    if counts[Verdict.ERROR]:
        parts.append(f"{counts[Verdict.ERROR]} errors")
    return ", ".join(parts)


ID_WIDTH = 30


def header_row() -> str:
    return f"  {'ID':<{ID_WIDTH}} {'SECTION':<8} {'LEVEL':<6} VERDICT"


def _wrap(prefix: str, text: str, width: int = 100) -> list[str]:
    # Continuation lines indented under the text, so long lines stay readable in a terminal.
    indent = " " * len(prefix)
    lines: list[str] = []
    line = prefix
    for word in text.split(" "):
        if len(line) + len(word) > width and line.strip() and line != prefix:
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    lines.append(line.rstrip())
    return lines


def format_result(result: Result, *, details: bool = True) -> list[str]:
    """The lines of one case in the terminal report."""
    case = result.case
    row = f"  {case.id:<{ID_WIDTH}} {case.section:<8} {case.level.value:<6} {result.verdict.value}"
    if result.verdict in (Verdict.SKIP, Verdict.NOT_RUN) and result.note:
        row += f"  ({result.note})"
    lines = [row]
    if result.verdict is Verdict.INFO and result.note:
        lines += _wrap("      Observed:    ", result.note)
    if not details or result.verdict not in (Verdict.FAIL, Verdict.NON_STRICT, Verdict.ERROR):
        return lines
    lines += _wrap("      Case:        ", case.title)
    requirement = result.requirement
    lines += _wrap("      Requirement: ", f'"{requirement.text}" (spec {requirement.section})')
    lines += _wrap("      Expected:    ", result.expected)
    lines += _wrap("      Actual:      ", result.actual)
    if result.frames:
        lines.append("      Last frames exchanged:")
        lines += [f"        {line}" for line in result.frames]
    return lines


def print_header(stream: TextIO, run: Run, count: int) -> None:
    cases = f"{count} case" + ("" if count == 1 else "s")
    print(f"chatwire conformance, {run.mode} side: {run.target} ({cases})", file=stream)
    print("", file=stream)
    print(header_row(), file=stream)


def print_footer(stream: TextIO, run: Run) -> None:
    failed = [r for r in run.results if r.verdict in (Verdict.FAIL, Verdict.ERROR)]
    non_strict = [r for r in run.results if r.verdict is Verdict.NON_STRICT]
    print("", file=stream)
    if failed:
        print("Failures (MUST):", file=stream)
        for result in failed:
            section = result.requirement.section
            print(f"  {result.case.id} (spec {section}): {result.actual}", file=stream)
    if non_strict:
        print("Non-strict (SHOULD):", file=stream)
        for result in non_strict:
            section = result.requirement.section
            print(f"  {result.case.id} (spec {section}): {result.actual}", file=stream)
    if run.stopped:
        not_run = sum(1 for r in run.results if r.verdict is Verdict.NOT_RUN)
        print(f"Stopped: {run.stopped}", file=stream)
        print(f"  {not_run} cases not run (--keep-going runs every case anyway)", file=stream)
    print(f"{summary_line(run.results)} in {run.duration:.2f} s", file=stream)


def write_json(path: str, run: Run) -> None:
    """The whole run as JSON (see ``docs/conformance.md`` for the fields)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(run.as_dict(), handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def write_junit(path: str, run: Run) -> None:
    """The run as JUnit XML: one testcase per case; FAIL and ERROR are failures and errors,
    NOT-RUN an error (the run did not finish), SKIP is skipped, NON-STRICT and INFO pass with
    their text in ``system-out``."""
    counts = run.counts()
    suite = ET.Element(
        "testsuite",
        name=f"chatwire-conformance {run.mode}",
        tests=str(len(run.results)),
        failures=str(counts.get(Verdict.FAIL, 0)),
        errors=str(counts.get(Verdict.ERROR, 0) + counts.get(Verdict.NOT_RUN, 0)),
        skipped=str(counts.get(Verdict.SKIP, 0)),
        time=f"{run.duration:.3f}",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(run.started)),
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="target", value=run.target)
    for result in run.results:
        case = result.case
        element = ET.SubElement(
            suite,
            "testcase",
            classname=f"spec {case.section}",
            name=case.id,
            time=f"{result.duration:.3f}",
        )
        requirement = result.requirement
        text = "\n".join(
            [
                f"{case.level.value}: {requirement.text} (spec {requirement.section})",
                f"Expected: {result.expected}" if result.expected else "",
                f"Actual: {result.actual}" if result.actual else "",
                *result.frames,
            ]
        ).strip()
        if result.verdict is Verdict.FAIL:
            ET.SubElement(element, "failure", message=result.actual, type="MUST").text = text
        elif result.verdict is Verdict.ERROR:
            ET.SubElement(element, "error", message=result.actual, type="kit").text = text
        elif result.verdict is Verdict.NOT_RUN:
            message = f"not run: {result.note}"
            ET.SubElement(element, "error", message=message, type="not-run").text = message
        elif result.verdict is Verdict.SKIP:
            ET.SubElement(element, "skipped", message=result.note)
        elif result.verdict in (Verdict.NON_STRICT, Verdict.INFO):
            label = "NON-STRICT" if result.verdict is Verdict.NON_STRICT else "INFO"
            ET.SubElement(element, "system-out").text = f"{label}: {result.note or text}"
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
