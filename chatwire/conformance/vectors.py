"""Loading the spec's test vectors (``spec/vectors/*.json``, spec Appendix B) for the kit.

The kit reuses the malformed streams and the nick lists of the vectors instead of inventing its
own, so the kit and the spec cannot disagree. They are found, in this order: in the directory
given with ``--vectors``; in ``spec/vectors`` next to the package (a checkout, or an editable
install); in ``share/chatwire/vectors`` under the installation prefix, where a wheel installs
them (pyproject.toml, data-files). When they cannot be found, the cases that need them are
skipped, saying why.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from .registry import Skipped

__all__ = ["find_directory", "load"]


def find_directory(explicit: str | None = None) -> Path | None:
    """The vectors directory: ``explicit`` if given, else ``spec/vectors`` of the checkout this
    package was loaded from; ``None`` if there is none."""
    if explicit:
        path = Path(explicit)
        return path if (path / "malformed.json").is_file() else None
    here = Path(__file__).resolve()
    candidates = [parent / "spec" / "vectors" for parent in here.parents]
    candidates += [
        Path(prefix) / "share" / "chatwire" / "vectors" for prefix in (sys.prefix, sys.base_prefix)
    ]
    for candidate in candidates:
        if (candidate / "malformed.json").is_file():
            return candidate
    return None


@cache
def _read(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load(name: str, explicit: str | None = None) -> Any:
    """The parsed ``<name>.json``: for ``frames`` and ``malformed`` the list of vectors, for
    ``nicks`` the whole object.

    Raises:
        Skipped: the directory or the file is missing.
    """
    directory = find_directory(explicit)
    if directory is None:
        where = explicit or "spec/vectors next to the chatwire package"
        raise Skipped(f"test vectors not found in {where} (give --vectors DIR)")
    path = directory / f"{name}.json"
    if not path.is_file():
        raise Skipped(f"{path} not found")
    data = _read(str(path))
    return data.get("vectors", data)
