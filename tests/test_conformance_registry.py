"""The case registry (chatwire/conformance/registry.py): every case quotes, verbatim, a sentence of
the section it cites, and that sentence carries the case's key word; ids are unique; --only /
--skip select by id, wildcard or section (a case's own and the others it exercises)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatwire.conformance import CLIENT, SERVER, Level
from chatwire.conformance.registry import (
    Case,
    Registry,
    Requirement,
    SelectionError,
    matches,
    select,
)
from chatwire.conformance.wire import WIRE_REQUIREMENTS

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "spec" / "protocol.md").read_text(encoding="utf-8")
GUIDE = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
ALL = SERVER.cases() + CLIENT.cases()

#: The key words of each level (spec 1.1; "MUST NOT" contains "MUST", and so on).
KEY_WORDS = {
    Level.MUST: ("MUST", "REQUIRED", "SHALL"),
    Level.SHOULD: ("SHOULD", "RECOMMENDED"),
    Level.MAY: ("MAY", "OPTIONAL"),
}

#: Cases whose behaviour the spec states without a key word, so the sentence they quote cannot
#: carry their level. docs/conformance.md keeps the same list ("Cases whose sentence has no key
#: word"). It is empty: every behaviour the kit checks has a key-word sentence in the spec. A
#: case that ever has to quote a sentence without one goes here, with why, until the spec
#: gains the sentence.
NO_KEY_WORD: dict[str, str] = {}


def _flat(text: str) -> str:
    return " ".join(text.split())


_HEADING = re.compile(r"^#{2,5} (?:(\d+(?:\.\d+)*)\.? |Appendix ([A-Z])\.)", re.MULTILINE)


def _section_texts() -> dict[str, str]:
    """Each section's own text (up to the next heading of any level), flattened."""
    heads = [(m.start(), m.group(1) or m.group(2)) for m in _HEADING.finditer(SPEC)]
    ends = [start for start, _ in heads[1:]] + [len(SPEC)]
    return {
        number: _flat(SPEC[start:end]) for (start, number), end in zip(heads, ends, strict=True)
    }


SECTIONS = _section_texts()


def _quoted_in(requirement: Requirement) -> None:
    text = SECTIONS.get(requirement.section)
    assert text is not None, f"no section {requirement.section} in the spec"
    position = 0
    for part in requirement.text.split(" ... "):
        fragment = part.strip()
        found = text.find(fragment, position)
        assert found >= 0, f"{fragment!r} is not in section {requirement.section} of the spec"
        position = found + len(fragment)


def _key_words(text: str, level: Level) -> list[str]:
    return [w for w in KEY_WORDS[level] if re.search(rf"\b{w}\b", text)]


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_every_case_quotes_the_section_it_cites_verbatim(case: Case) -> None:
    _quoted_in(Requirement(case.section, case.requirement))


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_every_quote_carries_the_key_word_of_the_case(case: Case) -> None:
    found = _key_words(case.requirement, case.level)
    if case.id in NO_KEY_WORD:
        assert not found, f"{case.id} quotes {found}: take it off the exception list"
    else:
        assert found, f"{case.id} is {case.level.value} but quotes {case.requirement!r}"
    assert case.timeout > 0 and case.title


def test_the_exceptions_are_documented_in_the_guide() -> None:
    part = GUIDE.split("### Cases whose sentence has no key word", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", part, re.MULTILINE))
    assert listed == set(NO_KEY_WORD)
    assert set(NO_KEY_WORD) <= {case.id for case in ALL}


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_every_case_cites_existing_sections(case: Case) -> None:
    for section in case.sections:
        assert section in SECTIONS, f"{case.id}: no section {section} in the spec"
    assert case.section not in case.also, case.id


@pytest.mark.parametrize("section", sorted(WIRE_REQUIREMENTS))
def test_wire_failures_quote_a_must_sentence_of_their_section(section: str) -> None:
    requirement = WIRE_REQUIREMENTS[section]
    _quoted_in(requirement)
    assert _key_words(requirement.text, Level.MUST), requirement


def test_ids_are_unique_across_both_sides() -> None:
    ids = [case.id for case in ALL]
    assert len(ids) == len(set(ids))


def test_coverage_of_the_spec_sections_the_issue_names() -> None:
    sections = {section for case in SERVER.cases() for section in case.sections}
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
    assert "no-echo" in {c.id for c in by_section}
    assert all(any(s.startswith("3.1.7") for s in c.sections) for c in by_section)
    assert {"msg-to-all-others", "relays-one-order"} <= {c.id for c in by_section}  # 3.1.7; 5.3
    assert [c.id for c in select(cases, ["no-echo"])] == ["no-echo"]
    assert {c.id for c in select(cases, ["nick-*"])} >= {"nick-taken", "nick-accepted"}
    assert {c.id for c in select(cases, ["3.1.1,no-echo"])} >= {"login-taken", "no-echo"}
    skipped = select(cases, [], ["3.1", "malformed-*"])
    assert skipped and not any(s.startswith("3.1") for c in skipped for s in c.sections)
    assert not any(c.id.startswith("malformed-") for c in skipped)
    assert len(select(cases)) == len(cases)


def test_a_section_selects_every_case_that_exercises_it() -> None:
    # The guide's example: --only 3.1.4 is "files", whichever section a file case quotes.
    files = {c.id for c in select(SERVER.cases(), ["3.1.4"])}
    assert files >= {
        "file-relay-bytes",
        "largest-file-name",
        "empty-file",
        "file-to-all-others",
        "file-names",
        "file-store-and-forward",
        "file-sender-drops",
        "file-large",
        "malformed-file-name",
        "frames-not-interleaved",
    }
    assert "nick-taken" not in files
    case = Case("x", "5.3", Level.MUST, "t", "r", lambda c: None, also=("3.1.4",))
    assert matches(case, "3.1.4") and matches(case, "3.1") and matches(case, "5")
    assert not matches(case, "3.1.7")


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


def test_the_readme_counts_the_cases() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    part = readme.split("## Testing your own implementation", 1)[1].split("\n## ", 1)[0]
    assert f"{len(SERVER)} server cases" in part and f"{len(CLIENT)} client cases" in part
