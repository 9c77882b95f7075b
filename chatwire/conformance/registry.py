"""The case model of the conformance kit: levels, cases, their registry and their selection.

Rules (after irctest's ``cases.mark_specifications`` and h2spec's section ids):

- Every case quotes, verbatim, the sentence of ``spec/protocol.md`` that requires the behaviour,
  and names the section that holds that sentence. The sentence carries the case's key word
  (spec 1.1): a MUST case quotes a MUST (or MUST NOT) sentence, a SHOULD case a SHOULD sentence,
  a MAY case a MAY sentence. ``tests/test_conformance_registry.py`` checks all three; its
  list of cases whose behaviour the spec states without a key word (documented in
  docs/conformance.md) is empty. The quotation is what the report shows next to a failure.
- A case may also name the other sections it exercises (``also``): ``--only 3.1.4`` selects
  every case that sends or checks a file, not only those that quote 3.1.4.
- Every case has a level, which decides what its failure means (Autobahn's verdict scheme):
  ``MUST`` failures fail the run; ``SHOULD`` misses are reported as non-strict; ``MAY`` cases
  observe behaviour the spec leaves open and are only informational. A failure that is not
  the case's own (the server broke a MUST requirement the case relies on: a malformed frame,
  a login not answered) fails the run whatever the case's level.
- Every case has a timeout: the runner gives up on a case that takes longer, reports it failed
  and goes on with the next one.

How it works: a case is a plain function taking the kit's context object (the server-side kit
passes a `chatwire.conformance.probe.CaseContext`, the client-side kit its own). It returns
``None`` or a short observation, raises `Failed` with what was expected and what happened, or
`Skipped` when the behaviour cannot be checked (an option not given, a transport not in use).
A `Registry` collects the cases of one side in definition order; `select` applies ``--only``
and ``--skip``.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Case",
    "CaseFunction",
    "Failed",
    "Level",
    "Registry",
    "Requirement",
    "SelectionError",
    "Skipped",
    "matches",
    "select",
]


class Level(enum.Enum):
    """How binding the checked behaviour is (spec 1.1, RFC 2119 key words)."""

    MUST = "MUST"  # absolute requirement: a failure fails the run
    SHOULD = "SHOULD"  # recommendation: a miss is reported as non-strict
    MAY = "MAY"  # left open by the spec: the case only reports what it saw


@dataclass(frozen=True, slots=True)
class Requirement:
    """One sentence of the spec, quoted verbatim, and the section that holds it."""

    section: str
    text: str


class Failed(Exception):  # noqa: N818 - a verdict, not an error of the kit
    """The implementation did not do what the case requires.

    Args:
        expected: what the spec requires, in a few words (the report's "Expected" line).
        actual: what happened instead (the report's "Actual" line).
        requirement: the MUST requirement that failed, when it is not the case's own (a
            refused frame breaks spec 2.2 whatever the case checks; a login the case needs
            was not answered). Such a failure is FAIL whatever the case's level.
        setup: the case could not get to what it checks (no connection, no ACC): FAIL
            whatever the case's level, never a SHOULD miss or an observation.
        timed_out: nothing happened within the wait (the runner stops a run after several
            cases in a row got nothing at all from the server).
    """

    def __init__(
        self,
        expected: str,
        actual: str,
        *,
        requirement: Requirement | None = None,
        setup: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__(f"expected {expected}; actual: {actual}")
        self.expected = expected
        self.actual = actual
        self.requirement = requirement
        self.setup = setup
        self.timed_out = timed_out

    @property
    def foreign(self) -> bool:
        """True when this is not the case's own check failing (see ``requirement``, ``setup``)."""
        return self.requirement is not None or self.setup


class Skipped(Exception):  # noqa: N818 - a verdict, not an error of the kit
    """The case cannot run here (an option not given, another transport, a server limit)."""


CaseFunction = Callable[[Any], str | None]

_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_SECTION = re.compile(r"(\d+(\.\d+)*|A|B)")


@dataclass(frozen=True, slots=True)
class Case:
    """One check of one requirement.

    Attributes:
        id: unique kebab-case name, stable across versions (used by ``--only`` and in reports).
        section: the spec section that holds the quoted sentence (``"3.1.4"``).
        level: `Level` of the requirement: the key word of the quoted sentence.
        title: one line saying what the case does.
        requirement: the spec's own sentence, quoted verbatim (`` ... `` joins parts of one
            section that are quoted in order).
        run: the function (see the module docstring).
        timeout: seconds after which the runner gives up and fails the case.
        side: ``"server"`` or ``"client"``: which kind of implementation it checks.
        also: the other sections the case exercises; ``--only`` and ``--skip`` match them
            like ``section``.
    """

    id: str
    section: str
    level: Level
    title: str
    requirement: str
    run: CaseFunction = field(repr=False, compare=False)
    timeout: float = 10.0
    side: str = "server"
    also: tuple[str, ...] = ()

    @property
    def sections(self) -> tuple[str, ...]:
        """``section`` first, then ``also``."""
        return (self.section, *self.also)


class Registry:
    """The cases of one side, in the order they were defined (the order they run in)."""

    def __init__(self, side: str) -> None:
        self.side = side
        self._cases: dict[str, Case] = {}

    def case(
        self,
        id: str,
        section: str,
        level: Level,
        requirement: str,
        *,
        title: str,
        timeout: float = 10.0,
        also: Sequence[str] = (),
    ) -> Callable[[CaseFunction], CaseFunction]:
        """Register the decorated function as a case (see `Case` for the arguments).

        Raises:
            ValueError: a malformed or duplicate id, or a malformed section.
        """
        if not _ID.fullmatch(id):
            raise ValueError(f"case id {id!r} is not kebab-case")
        if id in self._cases:
            raise ValueError(f"duplicate case id {id!r}")
        for number in (section, *also):
            if not _SECTION.fullmatch(number):
                raise ValueError(f"case {id}: {number!r} is not a spec section number")

        def register(function: CaseFunction) -> CaseFunction:
            self._cases[id] = Case(
                id=id,
                section=section,
                level=level,
                title=title,
                requirement=" ".join(requirement.split()),
                run=function,
                timeout=timeout,
                side=self.side,
                also=tuple(also),
            )
            return function

        return register

    def cases(self) -> list[Case]:
        """Every registered case, in definition order."""
        return list(self._cases.values())

    def __getitem__(self, case_id: str) -> Case:
        return self._cases[case_id]

    def __len__(self) -> int:
        return len(self._cases)


class SelectionError(ValueError):
    """A ``--only`` or ``--skip`` pattern that matches no case (most likely a typo)."""


def matches(case: Case, pattern: str) -> bool:
    """True if ``pattern`` selects ``case``: its id (shell wildcards allowed, ``nick-*``), or
    one of its sections (`Case.sections`) or a parent section of one (``3.1`` selects 3.1,
    3.1.4 and 3.1.7.1, not 3.10)."""
    pattern = pattern.strip()
    for section in case.sections:
        if section == pattern or section.startswith(pattern + "."):
            return True
    return fnmatch.fnmatchcase(case.id, pattern)


def _patterns(values: Iterable[str]) -> list[str]:
    # "--only 3.1.4,nick-taken --only 2.2" all mean the same thing.
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def select(cases: Sequence[Case], only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Case]:
    """The cases that ``only`` selects (all when it is empty) minus those ``skip`` selects.

    Both take ids, id wildcards or section numbers, several per value separated by commas.

    Raises:
        SelectionError: a pattern that selects no case at all.
    """
    only_list, skip_list = _patterns(only), _patterns(skip)
    for pattern in only_list + skip_list:
        if not any(matches(case, pattern) for case in cases):
            raise SelectionError(f"no case matches {pattern!r} (ids, wildcards or sections)")
    chosen = [c for c in cases if not only_list or any(matches(c, p) for p in only_list)]
    return [c for c in chosen if not any(matches(c, p) for p in skip_list)]
