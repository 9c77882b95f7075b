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
  NON-STRICT, in a MAY case INFO (it reports what happened); `Skipped` is SKIP. A socket error
  that escapes a case is the server's doing (a reset, say) and counts as `Failed`; any other
  exception is a bug of the kit: ERROR, with the traceback in the report.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence

from chatwire.transport import Endpoint

from .probe import CaseContext, KitOptions, NickSource
from .registry import Case, Failed, Level, Skipped
from .report import Result, Verdict

__all__ = ["run_case", "run_cases"]

GRACE = 2.0  # seconds past a case's deadline before the runner closes its connections


def _verdict_for_failure(case: Case) -> Verdict:
    if case.level is Level.MUST:
        return Verdict.FAIL
    if case.level is Level.SHOULD:
        return Verdict.NON_STRICT
    return Verdict.INFO


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
                    _verdict_for_failure(case),
                    expected=exc.expected,
                    actual=exc.actual,
                    note=f"{exc.actual}" if case.level is Level.MAY else "",
                    frames=context.frames(),
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
    return result


def run_cases(
    cases: Sequence[Case],
    endpoint: Endpoint,
    options: KitOptions,
    *,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run ``cases`` in order; ``on_result`` is called after each (to print it at once)."""
    nicks = NickSource()
    results: list[Result] = []
    for case in cases:
        result = run_case(case, endpoint, options, nicks)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
