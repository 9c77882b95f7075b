"""chatwire.conformance: the conformance kit for third-party chatwire servers and clients.

Anyone who writes a server or a client from ``spec/protocol.md`` runs this kit to prove that it
speaks the protocol (``docs/conformance.md`` is the user's guide)::

    python -m chatwire.conformance server tcp://127.0.0.1:1234   # a server already running
    python -m chatwire.conformance client --port 5555             # then point a client at it

Rules: every case cites the section it checks and quotes its requirement; MUST failures fail
the run (exit status 1), SHOULD misses are reported as non-strict and MAY cases are
informational; each case has a timeout. The kit talks to an implementation only over the
network, so it works for any language.

Layout (an I/O layer above the sans-I/O core; it uses sockets and threads):

- `registry`: levels, cases, ``--only`` / ``--skip`` selection.
- `probe`: the kit's strict client connections and the context of a server case.
- `server_cases`: the server-side cases. `vectors`: the spec's test vectors.
- `runner`: one case after another, each within its timeout.
- `client_mode`: the scripted server of the client-side kit, and its cases.
- `report`: verdicts, the terminal table, JSON and JUnit files.
- `wire`: byte renditions and header diagnoses, shared with `chatwire.proxy`.
"""

from __future__ import annotations

from .client_mode import CLIENT, ClientKit, ClientOptions, run_client_kit
from .probe import KitOptions
from .registry import Case, Failed, Level, Skipped, select
from .report import Result, Run, Verdict, exit_status, summary_line
from .runner import run_cases
from .server_cases import SERVER

__all__ = [
    "CLIENT",
    "SERVER",
    "Case",
    "ClientKit",
    "ClientOptions",
    "Failed",
    "KitOptions",
    "Level",
    "Result",
    "Run",
    "Skipped",
    "Verdict",
    "exit_status",
    "run_cases",
    "run_client_kit",
    "select",
    "summary_line",
]
