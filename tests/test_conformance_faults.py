"""The kit against deliberately faulty servers (tests/faulty_servers.py): each fault class must
be caught by the MUST cases named for it, so a kit that passes a broken server is caught here.

Each test runs only the cases that concern its fault (the whole kit against the reference server
is run in test_conformance_server_cases.py), with short waits so a fault that makes a case time
out costs seconds, not minutes.
"""

from __future__ import annotations

import time

import pytest

from chatwire.conformance import SERVER, KitOptions, Level, Verdict, run_cases, select
from chatwire.transport import parse_endpoint
from tests.faulty_servers import FAULTS, VARIANTS, faulty_server
from tests.support import running_server

# The flood is half messages, half files: 8 MB of each is more than the kernel buffers a
# loopback connection to a client that does not read (about 4 MB here).
OPTIONS = KitOptions(wait=2.0, quiet=0.3, clients=10, large_file=2 << 20, flood=16 << 20)


def test_at_least_ten_fault_classes_including_the_required_ones() -> None:
    assert len(FAULTS) >= 10
    assert {"nul-padding", "echo", "ghost-after-quit", "truncated-file"} <= set(FAULTS)
    for name, fault in FAULTS.items():
        assert fault.catches, name
        for case_id, (section, reason) in fault.catches.items():
            assert SERVER[case_id].level is Level.MUST, f"{name}: {case_id} is not a MUST case"
            assert section and reason, f"{name}: say why {case_id} catches it"


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_caught_by_its_must_cases_for_the_right_reason(name: str) -> None:
    fault = FAULTS[name]
    cases = select(SERVER.cases(), fault.only)
    assert set(fault.catches) <= {case.id for case in cases}, "the selection must run them"
    started = time.monotonic()
    with faulty_server(name) as server:
        results = run_cases(cases, parse_endpoint(server.urls[0]), OPTIONS)
    by_id = {r.case.id: r for r in results}
    errors = [f"{r.case.id}: {r.actual}" for r in results if r.verdict is Verdict.ERROR]
    assert not errors, errors
    for case_id, (section, reason) in fault.catches.items():
        result = by_id[case_id]
        why = f"fault {name!r} ({fault.description}), case {case_id}: {result.actual!r}"
        assert result.verdict is Verdict.FAIL, why
        assert reason in result.actual, f"{why} does not say {reason!r}"
        assert result.requirement.section == section, f"{why} is reported under the wrong section"
    for result in results:
        if result.verdict is Verdict.FAIL:
            assert result.expected and result.actual, result.case.id
    assert time.monotonic() - started < 60


def test_nul_padding_is_reported_under_spec_2_2_whatever_the_case_checks() -> None:
    # no-echo's first frame is a NUL-padded ACC: the failure is spec 2.2's, not no-echo's.
    with faulty_server("nul-padding") as server:
        results = run_cases(
            select(SERVER.cases(), ["no-echo", "list-order"]),
            parse_endpoint(server.urls[0]),
            OPTIONS,
        )
    for result in results:
        assert result.verdict is Verdict.FAIL, result.case.id  # MAY list-order too: no INFO
        assert result.requirement.section == "2.2"
        assert result.requirement.text == "A sender MUST produce exactly this form."
        assert "NUL" in result.actual


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_legal_variant_passes_and_is_observed(name: str) -> None:
    variant = VARIANTS[name]
    with faulty_server(name) as server:
        results = run_cases(
            select(SERVER.cases(), variant.only), parse_endpoint(server.urls[0]), OPTIONS
        )
    by_id = {r.case.id: r for r in results}
    problems = [f"{r.case.id}: {r.actual}" for r in results if r.verdict is Verdict.FAIL]
    assert not problems, problems
    for case_id, (_, observed) in variant.catches.items():
        result = by_id[case_id]
        assert result.verdict is Verdict.INFO and result.note.startswith(observed), result.note


def test_the_reference_server_lists_in_join_order() -> None:
    # The contrast to the sorted-list variant: the kit's nicks sort differently from their
    # join order, so "sorted" and "join order" cannot be confused.
    with running_server() as server:
        results = run_cases(
            select(SERVER.cases(), ["list-order"]), parse_endpoint(server.urls[0]), OPTIONS
        )
    assert results[0].verdict is Verdict.INFO and results[0].note.startswith("join order")
