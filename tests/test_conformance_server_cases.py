"""The whole server kit (chatwire/conformance/server_cases.py) against the reference server:
every MUST case passes, over every transport, with and without notices. The faulty servers of
test_conformance_faults.py show the other half: that the same cases fail when they must."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trustme

from chatwire.conformance import SERVER, KitOptions, Level, Result, Verdict, run_cases, select
from chatwire.transport import parse_endpoint
from tests.support import running_server

FAST = KitOptions(clients=20, large_file=8 << 20)


def _run(url: str, only: Sequence[str] = (), options: KitOptions = FAST) -> list[Result]:
    return run_cases(select(SERVER.cases(), only), parse_endpoint(url), options)


def _problems(results: list[Result]) -> list[str]:
    return [
        f"{r.case.id} {r.verdict.value}: {r.expected} / {r.actual}"
        for r in results
        if r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT)
    ]


def test_whole_kit_passes_against_the_reference_server() -> None:
    with running_server() as server:
        results = _run(server.urls[0], options=KitOptions())
    assert not _problems(results), _problems(results)
    assert len(results) == len(SERVER)
    for result in results:
        if result.case.level is Level.MUST:
            assert result.verdict is Verdict.PASS, result.case.id
    skipped = {r.case.id for r in results if r.verdict is Verdict.SKIP}
    assert skipped == {"login-timeout", "stall-timeout", "tls-alpn"}  # options, transport


def test_notices_everywhere_are_tolerated() -> None:
    # Spec 3.1.8: notices may come wherever a relay may; no case may trip on them.
    with running_server(notices=True, welcome="welcome to the test") as server:
        results = _run(server.urls[0])
    assert not _problems(results), _problems(results)
    notices = next(r for r in results if r.case.id == "notices")
    assert notices.verdict is Verdict.INFO and "notices" in notices.note


def test_unix_socket(tmp_path: Path) -> None:
    with running_server(listen=[f"unix://{tmp_path}/chat.sock"]) as server:
        results = _run(server.urls[0], ["2.2", "3.1.1", "reset-frees-nick", "no-echo"])
    assert not _problems(results), _problems(results)
    verdicts = {r.case.id: r.verdict for r in results}
    assert verdicts["reset-frees-nick"] is Verdict.SKIP  # no reset on a Unix socket
    assert verdicts["acc-bytes"] is Verdict.PASS


def test_tls_and_alpn(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(f"{tmp_path}/s.pem")
    ca.cert_pem.write_to_path(f"{tmp_path}/ca.pem")
    with running_server(listen=[f"tls://127.0.0.1:0?cert={tmp_path}/s.pem"]) as server:
        url = server.urls[0] + f"?ca={tmp_path}/ca.pem"
        results = _run(url, ["2.2", "tls-alpn", "file-to-all-others", "malformed-isolated"])
    assert not _problems(results), _problems(results)
    assert {r.case.id: r.verdict for r in results}["tls-alpn"] is Verdict.PASS


def test_optional_timeout_cases_run_when_given() -> None:
    options = KitOptions(login_timeout=1.0, stall_timeout=1.0)
    with running_server(login_timeout=1.0, stall_timeout=1.0) as server:
        results = _run(server.urls[0], ["login-timeout", "stall-timeout"], options)
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS], _problems(results)
