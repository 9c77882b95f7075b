"""Small helpers shared by the command-line programs (chatserver, chatclient). No protocol here."""

from __future__ import annotations

import re

__all__ = ["parse_size"]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"4G"`` -> 4294967296; accepts K, M, G, T (powers of 1024), with an optional ``B`` or
    ``iB``.

    Raises:
        ValueError: not a size.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 512K, 100M, 4G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]
