"""The case registry (chatwire/conformance/registry.py): every case cites a real section and
quotes the spec verbatim; ids are unique; --only / --skip select by id, wildcard or section."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatwire.conformance import CLIENT, SERVER, Level
from chatwire.conformance.registry import Case, Registry, SelectionError, matches, select

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "spec" / "protocol.md").read_text(encoding="utf-8")
ALL = SERVER.cases() + CLIENT.cases()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _sections() -> set[str]:
    found = set(re.findall(r"^#{2,5} (\d+(?:\.\d+)*)\.? ", SPEC, re.MULTILINE))
    found |= set(re.findall(r"^## Appendix ([A-Z])\.", SPEC, re.MULTILINE))
    return found


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_every_case_quotes_its_spec_verbatim(case: Case) -> None:
    spec = _flat(SPEC)
    position = 0
    for part in case.requirement.split(" ... "):
        fragment = part.strip()
        found = spec.find(fragment, position)
        assert found >= 0, f"{case.id}: {fragment!r} is not in spec/protocol.md"
        position = found + len(fragment)


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_every_case_cites_an_existing_section(case: Case) -> None:
    assert case.section in _sections(), f"{case.id}: no section {case.section} in the spec"


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_levels_match_the_key_words_quoted(case: Case) -> None:
    words = set(re.findall(r"\b(MUST|SHOULD|MAY)\b", case.requirement))
    if case.level is Level.SHOULD:
        assert "SHOULD" in words, case.id
    if case.level is Level.MAY:
        assert ("SHOULD" not in words and "MUST" not in words) or case.side == "client", case.id
    assert case.timeout > 0 and case.title


def test_ids_are_unique_across_both_sides() -> None:
    ids = [case.id for case in ALL]
    assert len(ids) == len(set(ids))


def test_coverage_of_the_spec_sections_the_issue_names() -> None:
    sections = {case.section for case in SERVER.cases()}
    for needed in (
        "2.2",
        "2.8.4",
        "3.1.1",
        "3.1.2",
        "3.1.3",
        "3.1.4",
        "3.1.5",
        "3.1.6",
        "3.1.7",
        "3.1.7.1",
        "5.2",
        "5.3",
        "6.3",
        "7.1",
        "7.3",
    ):
        assert needed in sections, needed
    levels = {case.level for case in SERVER.cases()}
    assert levels == {Level.MUST, Level.SHOULD, Level.MAY}


def test_registry_refuses_bad_ids_and_duplicates() -> None:
    registry = Registry("server")
    registry.case("a-case", "3.1", Level.MUST, "x", title="t")(lambda ctx: None)
    with pytest.raises(ValueError, match="duplicate"):
        registry.case("a-case", "3.1", Level.MUST, "x", title="t")
    with pytest.raises(ValueError, match="kebab"):
        registry.case("Bad_Id", "3.1", Level.MUST, "x", title="t")
    with pytest.raises(ValueError, match="section"):
        registry.case("other", "three", Level.MUST, "x", title="t")
    assert len(registry) == 1 and registry["a-case"].side == "server"


def test_selection_by_section_prefix_id_and_wildcard() -> None:
    cases = SERVER.cases()
    by_section = select(cases, ["3.1.7"])
    assert {c.section for c in by_section} <= {"3.1.7", "3.1.7.1", "3.1.7.2"}
    assert "no-echo" in {c.id for c in by_section}
    assert all(c.section.startswith("3.1.7") for c in by_section)
    assert [c.id for c in select(cases, ["no-echo"])] == ["no-echo"]
    assert {c.id for c in select(cases, ["nick-*"])} >= {"nick-taken", "nick-accepted"}
    assert {c.id for c in select(cases, ["3.1.1,no-echo"])} >= {"login-taken", "no-echo"}
    skipped = select(cases, [], ["3.1", "malformed-*"])
    assert skipped and not any(c.section.startswith("3.1") for c in skipped)
    assert not any(c.id.startswith("malformed-") for c in skipped)
    assert len(select(cases)) == len(cases)


def test_a_section_prefix_stops_at_a_dot() -> None:
    case = Case("x", "3.10", Level.MUST, "t", "r", lambda c: None)
    assert not matches(case, "3.1")
    assert matches(case, "3") and matches(case, "3.10") and matches(case, "x")


def test_a_pattern_matching_nothing_is_an_error() -> None:
    with pytest.raises(SelectionError, match="no case matches"):
        select(SERVER.cases(), ["9.9"])
    with pytest.raises(SelectionError):
        select(SERVER.cases(), [], ["nonexistent-case"])


def test_the_user_guide_names_every_case() -> None:
    guide = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    missing = [case.id for case in ALL if f"`{case.id}`" not in guide]
    assert not missing, f"docs/conformance.md does not mention {missing}"
