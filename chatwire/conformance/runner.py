"""Running server cases one after the other, each within its timeout.

Rules:

- Cases run one at a time, in registry order, each with a fresh `CaseContext` (new
  connections, new nicks, its own trace), so one case's failure cannot leak into the next.
- Each case has a deadline: every wait inside the case is cut to it, so a server that stops
  answering makes the waiting case fail with "nothing within N s". As a last resort the runner
  waits for the case's thread only until the deadline plus a grace period, then closes the
  case's connections (which unblocks anything still waiting) and reports it failed: a hung
  server fails that case and the run goes on.
- A case's verdict depends on its level: `Failed` in a MUST case is FAIL, in a SHOULD case
  NON-STRICT. A MAY case only observes (it returns what it saw), so a `Failed` there means the
  server broke something the observation relies on: FAIL. So is a failure that is not the
  case's own (`Failed.foreign`: a refused frame, a login not answered) whatever the level.
  `Skipped` is SKIP. A socket error that escapes a case is the server's doing (a reset, say)
  and counts as `Failed`; any other exception is a bug of the kit: ERROR, with the traceback.
- A run stops early, and says why, instead of spending minutes on a server that does not
  answer: before the first case a login probe must get some answer (any byte, or a close),
  and after `KitOptions.stop_after` cases in a row failed without a single byte or close
  from the server, the rest are not run. The cases left are NOT-RUN, which fails the run.
  ``KitOptions.keep_going`` (``--keep-going``) runs every case regardless.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence

import chatwire as cw
from chatwire.transport import Endpoint, connect

from .probe import CaseContext, KitOptions, NickSource
from .registry import Case, Failed, Level, Skipped
from .report import Result, Verdict

__all__ = ["login_probe", "run_case", "run_cases"]

GRACE = 2.0  # seconds past a case's deadline before the runner closes its connections


def _verdict_for_failure(case: Case, foreign: bool = False) -> Verdict:
    if case.level is Level.SHOULD and not foreign:
        return Verdict.NON_STRICT
    return Verdict.FAIL


def run_case(case: Case, endpoint: Endpoint, options: KitOptions, nicks: NickSource) -> Result:
    """Run one case against the server at ``endpoint``; never raises."""
    timeout = case.timeout * options.timeout_scale
    context = CaseContext(endpoint, options, timeout=timeout, nicks=nicks)
    outcome: list[Result] = []
    started = time.monotonic()

    def work() -> None:
        try:
            note = case.run(context)
        except Failed as exc:
            outcome.append(
                Result(
                    case,
                    _verdict_for_failure(case, exc.foreign),
                    expected=exc.expected,
                    actual=exc.actual,
                    frames=context.frames(),
                    failed=exc.requirement,
                )
            )
        except Skipped as exc:
            outcome.append(Result(case, Verdict.SKIP, note=str(exc)))
        except OSError as exc:
            outcome.append(
                Result(
                    case,
                    _verdict_for_failure(case),
                    expected="the connection to work",
                    actual=f"socket error: {exc!r}",
                    frames=context.frames(),
                )
            )
        except Exception as exc:
            outcome.append(
                Result(
                    case,
                    Verdict.ERROR,
                    expected="the kit to run the case",
                    actual=f"kit error {exc!r}: {traceback.format_exc(limit=6)}",
                    frames=context.frames(),
                )
            )
        else:
            verdict = Verdict.INFO if case.level is Level.MAY else Verdict.PASS
            outcome.append(Result(case, verdict, note=note or ""))
        finally:
            context.close_all()

    thread = threading.Thread(target=work, name=f"case {case.id}", daemon=True)
    thread.start()
    thread.join(timeout + GRACE)
    if thread.is_alive():
        context.close_all()  # unblocks whatever the case waits on
        thread.join(GRACE)
        result = Result(
            case,
            _verdict_for_failure(case),
            expected=f"the case to complete within {timeout:g} s",
            actual="timed out: the server stopped answering",
            frames=context.frames(),
        )
    else:
        result = outcome[0]
    result.duration = time.monotonic() - started
    result.silent = result.verdict in (Verdict.FAIL, Verdict.NON_STRICT) and not context.heard()
    return result


def login_probe(endpoint: Endpoint, options: KitOptions, nicks: NickSource) -> str | None:
    """Log in once and wait for any answer (a byte, or the end of the stream): ``None`` if
    one came, else why the run cannot go on. Any answer will do, even a malformed one: the
    cases say what is wrong with it; this only tells a mute server from a live one."""
    wait = options.wait * options.timeout_scale
    try:
        sock = connect(endpoint, timeout=wait)
    except OSError as exc:
        return f"cannot connect to {endpoint.url}: {exc}"
    try:
        sock.settimeout(wait)
        sock.sendall(cw.encode(cw.Login(nick=nicks())))
        try:
            answer = sock.recv(cw.HEADER_SIZE)
        except TimeoutError:
            return (
                f"the server accepted a connection but did not answer a login within {wait:g} s "
                "(no byte, no close): it looks hung or mute"
            )
        except OSError as exc:
            return f"the connection broke while waiting for the answer to a login: {exc}"
        if not answer:
            return "the server closed the connection without answering a login"
        if answer == cw.encode(cw.Accepted()):
            with contextlib.suppress(OSError):
                sock.sendall(cw.encode(cw.Quit()))
        return None
    except OSError as exc:
        return f"the connection broke before a login could be sent: {exc}"
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _not_run(cases: Sequence[Case], reason: str) -> list[Result]:
    return [Result(case, Verdict.NOT_RUN, note=reason) for case in cases]


def run_cases(
    cases: Sequence[Case],
    endpoint: Endpoint,
    options: KitOptions,
    *,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run ``cases`` in order; ``on_result`` is called after each case that ran (to print it
    at once). Cases left when the run stops early (see the module docstring) are returned as
    NOT-RUN results, without a call to ``on_result``."""
    nicks = NickSource()
    if cases and not options.keep_going:
        reason = login_probe(endpoint, options, nicks)
        if reason is not None:
            return _not_run(cases, f"stopped before the first case: {reason}")
    results: list[Result] = []
    silent: list[str] = []  # ids of the latest cases in a row that failed hearing nothing
    for index, case in enumerate(cases):
        result = run_case(case, endpoint, options, nicks)
        results.append(result)
        if on_result is not None:
            on_result(result)
        if result.silent:
            silent.append(case.id)
        elif result.verdict is not Verdict.SKIP:
            silent = []
        if not options.keep_going and len(silent) >= options.stop_after:
            reason = (
                f"{len(silent)} cases in a row ({', '.join(silent)}) failed without a byte or "
                "a close from the server: it stopped answering"
            )
            results += _not_run(cases[index + 1 :], reason)
            break
    return results
