"""The command line (chatwire/conformance/__main__.py): ``server URL`` against a running
server, exit status, report files, selection errors, ``cases``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chatwire.conformance import SERVER, select
from chatwire.conformance.__main__ import main
from tests.faulty_servers import faulty_server, silent_server
from tests.support import ROOT, running_server, server_process


def test_whole_kit_from_the_command_line_against_a_server_process(tmp_path: Path) -> None:
    with server_process() as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "chatwire.conformance",
                "server",
                server.urls[0],
                "--json",
                str(tmp_path / "r.json"),
                "--junit",
                str(tmp_path / "r.xml"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert " passed, 0 failed, 3 skipped" in last, last
    assert "ID" in done.stdout and "SECTION" in done.stdout and "VERDICT" in done.stdout
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["passed"] is True and data["summary"]["FAIL"] == 0
    assert ET.parse(tmp_path / "r.xml").getroot().get("failures") == "0"


def test_exit_status_1_and_details_when_a_must_case_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with faulty_server("nul-padding") as server:
        status = main(["server", server.urls[0], "--only", "acc-bytes,no-echo", "--wait", "2"])
    out = capsys.readouterr().out
    assert status == 1
    assert "acc-bytes" in out and "FAIL" in out
    assert "Expected:" in out and "Actual:" in out and "Last frames exchanged:" in out
    assert "ACC\\x00\\x00" in out and "NUL" in out
    # no-echo's first frame was the NUL-padded ACC: reported as a spec 2.2 failure
    assert "no-echo (spec 2.2): header b'ACC\\x00" in out
    assert 'Requirement: "A sender MUST produce exactly this form." (spec 2.2)' in out
    assert out.strip().splitlines()[-1].startswith("0 passed, 2 failed, 0 skipped")


def test_selection_and_quiet_report(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--only", "2.2,list-order", "--skip", "nc-bytes", "-q"]
    with running_server() as server:
        status = main(["server", server.urls[0], *argv])
    out = capsys.readouterr().out
    assert status == 0
    assert "acc-bytes" not in out  # passes are not listed with -q
    assert "list-order" not in out and "Observed" not in out  # nor informational rows
    count = len(select(SERVER.cases(), ["2.2"], ["nc-bytes"]))
    summary = f"{count} passed, 0 failed, 0 skipped, 1 informational"
    assert out.strip().splitlines()[-1].startswith(summary)


def test_a_mute_server_ends_the_run_in_seconds_saying_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    listener, stop = silent_server()
    started = time.monotonic()
    try:
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        status = main(["server", url, "--json", str(tmp_path / "r.json")])
    finally:
        stop.set()
    assert time.monotonic() - started < 15  # the whole kit, with the default options
    out = capsys.readouterr().out
    assert status == 1
    assert "Stopped: stopped before the first case: the server accepted a connection" in out
    assert "--keep-going" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(f"0 passed, 0 failed, 0 skipped, {len(SERVER)} not run")
    )
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["passed"] is False and data["summary"]["NOT-RUN"] == len(SERVER)
    assert "did not answer a login" in data["stopped"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "tcp://127.0.0.1:9", "--wait", "0.5"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    with running_server() as server:
        assert main(["server", server.urls[0], "--only", "no-such-case"]) == 2
    assert "no case matches" in capsys.readouterr().err
    assert main(["server", "gopher://x:1"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["server"])
    assert exit_info.value.code == 2


def test_cases_command_lists_ids_sections_levels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cases", "-v"]) == 0
    out = capsys.readouterr().out
    assert "server cases (" in out and "client cases (" in out
    assert "no-echo" in out and "3.1.7" in out and "MUST" in out
    assert '"It MUST NOT echo a frame to its sender"' in out


def test_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'chatwire-conformance = "chatwire.conformance.__main__:main"' in text
