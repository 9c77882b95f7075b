"""The runner (chatwire/conformance/runner.py): per-case timeouts, so a hung server fails the
case and the run goes on; a mute server stops the run early, saying why; verdicts by level,
failures that are not the case's own fail whatever the level; kit bugs reported as errors."""

from __future__ import annotations

import re
import time

from chatwire.conformance import SERVER, KitOptions, Verdict, run_cases, select
from chatwire.conformance.probe import CaseContext
from chatwire.conformance.registry import Failed, Level, Registry, Requirement, Skipped
from chatwire.conformance.report import exit_status
from chatwire.conformance.runner import GRACE
from chatwire.transport import parse_endpoint
from tests.faulty_servers import silent_server


def test_a_hung_server_fails_each_case_and_the_run_goes_on_when_told_to() -> None:
    listener, stop = silent_server()
    try:
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        cases = select(SERVER.cases(), ["acc-bytes", "login-taken", "list-everyone"])
        started = time.monotonic()
        options = KitOptions(wait=0.5, keep_going=True)
        results = run_cases(cases, parse_endpoint(url), options)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
    assert [r.case.id for r in results] == ["acc-bytes", "login-taken", "list-everyone"]
    for result in results:
        assert result.verdict is Verdict.FAIL
        assert "nothing within 0.5 s" in result.actual
        assert result.frames and "login" in " ".join(result.frames)
    assert elapsed < 5


def test_a_mute_server_stops_the_run_after_the_login_probe() -> None:
    listener, stop = silent_server()
    try:
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        results = run_cases(SERVER.cases(), parse_endpoint(url), KitOptions())
        elapsed = time.monotonic() - started
    finally:
        stop.set()
    assert len(results) == len(SERVER)
    assert {r.verdict for r in results} == {Verdict.NOT_RUN}
    assert "did not answer a login within 5 s" in results[0].note
    assert exit_status(results) == 1
    assert elapsed < 7  # one wait for the probe's answer, not minutes of timeouts


def test_a_server_that_goes_mute_stops_the_run_after_three_silent_cases() -> None:
    listener, stop = silent_server(answer_logins=1)  # only the login probe gets its ACC
    ids = ["acc-bytes", "ne-bytes", "nc-bytes", "list-reply-bytes", "msg-relay-bytes"]
    try:
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        results = run_cases(select(SERVER.cases(), ids), parse_endpoint(url), KitOptions(wait=0.5))
    finally:
        stop.set()
    assert [r.verdict for r in results] == [Verdict.FAIL] * 3 + [Verdict.NOT_RUN] * 2
    assert "acc-bytes, ne-bytes, nc-bytes" in results[-1].note
    assert "stopped answering" in results[-1].note


def test_vector_cases_count_vectors_not_run_apart_from_failures() -> None:
    listener, stop = silent_server()
    try:
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        cases = select(SERVER.cases(), ["malformed-range"])
        options = KitOptions(wait=0.5, keep_going=True, timeout_scale=0.05)  # a 3 s budget
        results = run_cases(cases, parse_endpoint(url), options)
    finally:
        stop.set()
    result = results[0]
    assert result.verdict is Verdict.FAIL
    ran, total = (
        int(n) for n in re.findall(r"(\d+) of the (\d+) vectors run failed", result.actual)[0]
    )
    assert 0 < ran == total  # every vector that ran failed: nothing was ever answered
    assert re.search(r"; \d+ of \d+ not run: the case's 3 s ran out", result.actual), result.actual


def test_a_case_stuck_past_its_timeout_is_failed_and_stopped() -> None:
    listener, stop = silent_server()
    registry = Registry("server")

    @registry.case("stuck", "3.1.1", Level.MUST, "r", title="blocks forever", timeout=0.3)
    def stuck(ctx: CaseContext) -> None:
        probe = ctx.connect()
        probe.sock.settimeout(None)  # ignore every deadline: only the runner can stop this
        probe.sock.recv(1)

    @registry.case("after", "3.1.1", Level.MUST, "r", title="runs next")
    def after(ctx: CaseContext) -> None:
        return None

    try:
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        results = run_cases(registry.cases(), parse_endpoint(url), KitOptions(keep_going=True))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
    assert results[0].verdict is Verdict.FAIL and "timed out" in results[0].actual
    assert results[1].verdict is Verdict.PASS
    assert elapsed < 0.3 + 2 * GRACE + 1


def test_verdicts_follow_the_levels() -> None:
    registry = Registry("server")

    def fail(ctx: CaseContext) -> None:
        raise Failed("this", "that")

    registry.case("must-fail", "3.1", Level.MUST, "r", title="t")(fail)
    registry.case("should-fail", "3.1", Level.SHOULD, "r", title="t")(fail)
    registry.case("may-fail", "3.1", Level.MAY, "r", title="t")(fail)

    def foreign(ctx: CaseContext) -> None:
        raise Failed("ACC", "NE\\x00", requirement=Requirement("2.2", "A sender MUST..."))

    def setup(ctx: CaseContext) -> None:
        raise Failed("ACC", "nothing", setup=True)

    registry.case("should-foreign", "3.1", Level.SHOULD, "r", title="t")(foreign)
    registry.case("should-setup", "3.1", Level.SHOULD, "r", title="t")(setup)
    registry.case("may-foreign", "3.1", Level.MAY, "r", title="t")(foreign)
    registry.case("may-note", "3.1", Level.MAY, "r", title="t")(lambda ctx: "seen")
    registry.case("passes", "3.1", Level.MUST, "r", title="t")(lambda ctx: None)

    def skip(ctx: CaseContext) -> None:
        raise Skipped("not here")

    def kit_bug(ctx: CaseContext) -> None:
        raise KeyError("oops")

    def reset(ctx: CaseContext) -> None:
        raise ConnectionResetError("reset by peer")

    registry.case("skips", "3.1", Level.MUST, "r", title="t")(skip)
    registry.case("kit-bug", "3.1", Level.MUST, "r", title="t")(kit_bug)
    registry.case("reset", "3.1", Level.MUST, "r", title="t")(reset)
    options = KitOptions(keep_going=True)  # nothing listens on port 9: no login probe
    results = run_cases(registry.cases(), parse_endpoint("tcp://127.0.0.1:9"), options)
    verdicts = {r.case.id: r.verdict for r in results}
    assert verdicts == {
        "must-fail": Verdict.FAIL,
        "should-fail": Verdict.NON_STRICT,
        "may-fail": Verdict.FAIL,  # a MAY case observes by returning: raising is a failure
        "should-foreign": Verdict.FAIL,
        "should-setup": Verdict.FAIL,
        "may-foreign": Verdict.FAIL,
        "may-note": Verdict.INFO,
        "passes": Verdict.PASS,
        "skips": Verdict.SKIP,
        "kit-bug": Verdict.ERROR,
        "reset": Verdict.FAIL,
    }
    by_id = {r.case.id: r for r in results}
    assert by_id["must-fail"].expected == "this" and by_id["must-fail"].actual == "that"
    assert by_id["may-note"].note == "seen" and by_id["skips"].note == "not here"
    assert "KeyError" in by_id["kit-bug"].actual
    assert by_id["should-foreign"].requirement == Requirement("2.2", "A sender MUST...")
    assert by_id["must-fail"].requirement == Requirement("3.1", "r")
