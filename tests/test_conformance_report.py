"""Reports (chatwire/conformance/report.py): the terminal table, the summary line, JSON, JUnit
XML and the exit status."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from chatwire.conformance.registry import Case, Level, Requirement
from chatwire.conformance.report import (
    Result,
    Run,
    Verdict,
    exit_status,
    format_result,
    print_footer,
    summary_line,
    write_json,
    write_junit,
)


def _case(case_id: str, level: Level = Level.MUST) -> Case:
    return Case(case_id, "3.1.7", level, "a title", "It MUST NOT echo", lambda ctx: None)


def _run() -> Run:
    run = Run(mode="server", target="tcp://127.0.0.1:1234", duration=1.5)
    run.results = [
        Result(_case("ok"), Verdict.PASS),
        Result(
            _case("bad"),
            Verdict.FAIL,
            expected="no echo",
            actual="an echo",
            frames=["12:00:00.000  ana -> S  msg 'hi'"],
        ),
        Result(_case("soft", Level.SHOULD), Verdict.NON_STRICT, expected="e", actual="a"),
        Result(_case("open", Level.MAY), Verdict.INFO, note="join order"),
        Result(_case("later"), Verdict.SKIP, note="give --option"),
    ]
    return run


def test_summary_line_and_exit_status() -> None:
    run = _run()
    assert summary_line(run.results) == (
        "1 passed, 1 failed, 1 skipped, 1 non-strict, 1 informational"
    )
    assert exit_status(run.results) == 1
    assert exit_status([r for r in run.results if r.verdict is not Verdict.FAIL]) == 0
    assert exit_status([Result(_case("x"), Verdict.ERROR)]) == 1


def test_a_failure_shows_requirement_expected_actual_and_frames() -> None:
    lines = format_result(_run().results[1])
    text = "\n".join(lines)
    assert lines[0].split() == ["bad", "3.1.7", "MUST", "FAIL"]
    assert '"It MUST NOT echo" (spec 3.1.7)' in text
    assert "Expected:    no echo" in text and "Actual:      an echo" in text
    assert "Last frames exchanged:" in text and "ana -> S" in text
    assert format_result(_run().results[0]) == [format_result(_run().results[0])[0]]
    assert "Observed:    join order" in "\n".join(format_result(_run().results[3]))
    assert "(give --option)" in format_result(_run().results[4])[0]


def test_footer_lists_failures_and_ends_with_the_summary() -> None:
    out = io.StringIO()
    print_footer(out, _run())
    text = out.getvalue()
    assert "Failures (MUST):\n  bad (spec 3.1.7): an echo" in text
    assert "Non-strict (SHOULD):\n  soft" in text
    assert text.rstrip().endswith("1 informational in 1.50 s")


def test_json_report(tmp_path: Path) -> None:
    write_json(str(tmp_path / "r.json"), _run())
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["mode"] == "server" and data["target"] == "tcp://127.0.0.1:1234"
    assert data["passed"] is False
    assert data["summary"]["FAIL"] == 1 and data["summary"]["NON-STRICT"] == 1
    bad = data["results"][1]
    assert bad["id"] == "bad" and bad["section"] == "3.1.7" and bad["level"] == "MUST"
    assert bad["requirement"] == "It MUST NOT echo"
    assert bad["expected"] == "no echo" and bad["actual"] == "an echo" and bad["frames"]


def test_junit_report(tmp_path: Path) -> None:
    write_junit(str(tmp_path / "r.xml"), _run())
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "1", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["bad"].find("failure") is not None
    assert "Expected: no echo" in (cases["bad"].find("failure").text or "")
    assert cases["later"].find("skipped") is not None
    assert cases["ok"].find("failure") is None and cases["soft"].find("failure") is None
    assert "NON-STRICT" in (cases["soft"].find("system-out").text or "")


def test_a_failure_of_another_requirement_is_shown_under_that_requirement() -> None:
    failed = Requirement("2.2", "A sender MUST produce exactly this form.")
    result = Result(_case("no-echo"), Verdict.FAIL, expected="e", actual="NUL", failed=failed)
    text = "\n".join(format_result(result))
    assert 'Requirement: "A sender MUST produce exactly this form." (spec 2.2)' in text
    assert result.as_dict()["requirement_section"] == "2.2"
    assert result.as_dict()["section"] == "3.1.7"  # the case's own section, for selection


def test_cases_not_run_fail_the_run_and_say_why(tmp_path: Path) -> None:
    run = Run(mode="server", target="tcp://127.0.0.1:1234")
    run.results = [Result(_case("a"), Verdict.NOT_RUN, note="the server stopped answering")]
    assert exit_status(run.results) == 1
    assert summary_line(run.results) == "0 passed, 0 failed, 0 skipped, 1 not run"
    assert run.stopped == "the server stopped answering"
    out = io.StringIO()
    print_footer(out, run)
    assert "Stopped: the server stopped answering" in out.getvalue()
    write_junit(str(tmp_path / "r.xml"), run)
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.get("errors") == "1"
    assert root.find("testcase/error").get("type") == "not-run"
