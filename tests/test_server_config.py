"""Tests of chatserver.config."""

from __future__ import annotations

import pytest

from chatserver.config import ServerConfig


def test_defaults_listen_everywhere_on_the_default_port() -> None:
    config = ServerConfig()
    assert config.listen == ["tcp://:1234"]
    assert not config.notices


@pytest.mark.parametrize(
    "bad",
    [
        {"listen": []},
        {"max_file_size": -1},
        {"sendq": -5},
        {"login_timeout": 0},
        {"upload_min_rate": -1},
        {"upload_rate_window": 0},
        {"spool_quota_per_ip": -1},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**bad)  # type: ignore[arg-type]
