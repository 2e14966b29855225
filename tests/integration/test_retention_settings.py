"""Retention settings: `event_retention_days` / `cdr_retention_days` in the
configuration (here REGSWITCH_* environment) give the live parameters their
starting value; a value set live is stored and wins after a restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from support.register_helpers import get_param, set_param
from support.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ServerFactory = Callable[..., RunningServer]


def test_configured_retention_then_a_live_change_wins(server_factory: ServerFactory) -> None:
    server = server_factory(
        env={"REGSWITCH_EVENT_RETENTION_DAYS": "7", "REGSWITCH_CDR_RETENTION_DAYS": "90"}
    )
    assert get_param(server, "EVENT_RETENTION_DAYS") == "7"
    assert get_param(server, "cdr_retention_days") == "90"  # names are case-insensitive
    set_param(server, "CDR_RETENTION_DAYS", 365)
    server.restart()
    assert get_param(server, "EVENT_RETENTION_DAYS") == "7"
    assert get_param(server, "CDR_RETENTION_DAYS") == "365"


def test_retention_must_be_a_positive_number_of_days(server_factory: ServerFactory) -> None:
    server = server_factory()
    response = server.api.put("/api/parameters/EVENT_RETENTION_DAYS", json={"value": 0})
    assert response.status_code in (400, 422), response.text
    assert get_param(server, "EVENT_RETENTION_DAYS") == "30"
