"""The case model of the conformance kit: levels, cases, their registry and their selection.

Rules (after irctest's ``cases.mark_specifications`` and h2spec's section ids):

- Every case names the section of ``spec/protocol.md`` it checks and quotes the sentence that
  requires the behaviour, verbatim (``tests/test_conformance_registry.py`` checks that every
  quotation appears in the spec). The quotation is what the report shows next to a failure.
- Every case has a level, which decides what its failure means (Autobahn's verdict scheme):
  ``MUST`` failures fail the run; ``SHOULD`` misses are reported as non-strict; ``MAY`` cases
  observe behaviour the spec leaves open and are only informational.
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


class Failed(Exception):  # noqa: N818 - a verdict, not an error of the kit
    """The implementation did not do what the case requires.

    Args:
        expected: what the spec requires, in a few words (the report's "Expected" line).
        actual: what happened instead (the report's "Actual" line).
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}; actual: {actual}")
        self.expected = expected
        self.actual = actual


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
        section: the spec section checked (``"3.1.4"``); ``--only 3.1`` selects it.
        level: `Level` of the requirement.
        title: one line saying what the case does.
        requirement: the spec's own sentence, quoted verbatim.
        run: the function (see the module docstring).
        timeout: seconds after which the runner gives up and fails the case.
        side: ``"server"`` or ``"client"``: which kind of implementation it checks.
    """

    id: str
    section: str
    level: Level
    title: str
    requirement: str
    run: CaseFunction = field(repr=False, compare=False)
    timeout: float = 10.0
    side: str = "server"


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
    ) -> Callable[[CaseFunction], CaseFunction]:
        """Register the decorated function as a case (see `Case` for the arguments).

        Raises:
            ValueError: a malformed or duplicate id, or a malformed section.
        """
        if not _ID.fullmatch(id):
            raise ValueError(f"case id {id!r} is not kebab-case")
        if id in self._cases:
            raise ValueError(f"duplicate case id {id!r}")
        if not _SECTION.fullmatch(section):
            raise ValueError(f"case {id}: {section!r} is not a spec section number")

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
    its section or a parent section (``3.1`` selects 3.1, 3.1.4 and 3.1.7.1, not 3.10)."""
    pattern = pattern.strip()
    if case.section == pattern or case.section.startswith(pattern + "."):
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
