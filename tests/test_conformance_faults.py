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
from tests.faulty_servers import FAULTS, faulty_server

OPTIONS = KitOptions(wait=2.0, quiet=0.3, clients=10, large_file=2 << 20, flood=8 << 20)


def test_at_least_ten_fault_classes_including_the_required_ones() -> None:
    assert len(FAULTS) >= 10
    assert {"nul-padding", "echo", "ghost-after-quit", "truncated-file"} <= set(FAULTS)
    for name, fault in FAULTS.items():
        assert fault.catches, name
        for case_id in fault.catches:
            assert SERVER[case_id].level is Level.MUST, f"{name}: {case_id} is not a MUST case"


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_caught_by_its_must_cases(name: str) -> None:
    fault = FAULTS[name]
    cases = select(SERVER.cases(), fault.only)
    assert fault.catches <= {case.id for case in cases}, "the selection must run the catchers"
    started = time.monotonic()
    with faulty_server(name) as server:
        results = run_cases(cases, parse_endpoint(server.urls[0]), OPTIONS)
    failed = {r.case.id for r in results if r.verdict is Verdict.FAIL}
    errors = [f"{r.case.id}: {r.actual}" for r in results if r.verdict is Verdict.ERROR]
    assert not errors, errors
    missed = fault.catches - failed
    assert not missed, (
        f"fault {name!r} ({fault.description}) was not caught by {sorted(missed)}; "
        f"failed: {sorted(failed)}"
    )
    for result in results:
        if result.verdict is Verdict.FAIL:
            assert result.expected and result.actual, result.case.id
    assert time.monotonic() - started < 60
