"""Tests of chatwire.cli."""

from __future__ import annotations

import pytest

from chatwire.cli import parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("4096", 4096),
        ("512K", 512 << 10),
        ("100m", 100 << 20),
        ("4G", 4 << 30),
        ("1GiB", 1 << 30),
        ("2 MB", 2 << 20),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "1.5G", "lots", "4X"])
def test_parse_size_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)
