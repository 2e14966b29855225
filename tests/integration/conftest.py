"""Fixtures of the call tests (SIPp devices and the admin API of the server)."""

from __future__ import annotations

import pytest

from calls.harness import Api, Devices
from support.server import RunningServer
from support.sipp import SippRunner


@pytest.fixture
def api(server: RunningServer) -> Api:
    return Api(server)


@pytest.fixture
def devs(sipp: SippRunner, server: RunningServer) -> Devices:
    return Devices(sipp, server)
