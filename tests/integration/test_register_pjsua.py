"""Two real PJSIP (pjsua2) phones on one account against a real `regswitch
serve`: under replace On the second phone takes the account over; under Off it
is refused (the first phone answers the §3.4 OPTIONS probe, as a live phone
does) and reports the reject code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support.register_helpers import DOMAIN, create_account, events, only, registrations, set_params
from support.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.pjsua, pytest.mark.timeout(60)]


def _register(phone: Any, server: RunningServer) -> dict[str, Any]:
    host, port = server.udp
    phone.register(f"sip:{host}:{port}", "alice", DOMAIN, "pw-alice", expires=300)
    return dict(phone.wait_reg(timeout=10))


def _port_of(contact: str) -> int:
    return int(contact.split(":")[-1].split(";")[0].rstrip(">"))


def test_second_phone_replaces_the_first_under_on(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    first, second = pjsua("first"), pjsua("second")
    assert _register(first, server)["code"] == 200
    assert _port_of(only(registrations(server, "alice"))["contact"]) == first.udp_port

    assert _register(second, server)["code"] == 200
    binding = only(registrations(server, "alice"))  # the first phone's registration is gone
    assert _port_of(binding["contact"]) == second.udp_port
    replaced = only(events(server, "replaced", "alice"))["details"]
    assert _port_of(replaced["old_contact"]) == first.udp_port
    assert _port_of(replaced["new_contact"]) == second.udp_port


def test_second_phone_is_refused_under_off(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")  # IF_UNREACHABLE stays On
    first, second = pjsua("first"), pjsua("second")
    assert _register(first, server)["code"] == 200

    refused = _register(second, server)
    assert refused["code"] == 403, refused
    assert refused["reason"] == "Registration Replace Disabled"
    assert refused["active"] is False
    binding = only(registrations(server, "alice"))
    assert _port_of(binding["contact"]) == first.udp_port and binding["reachable"] is True
    rejected = only(events(server, "rejected", "alice"))["details"]
    assert rejected["status"] == 403 and _port_of(rejected["old_contact"]) == first.udp_port
