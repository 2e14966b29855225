"""The contact helpers of the registrar (registrar/contacts.py): keys, requests, refusals."""

from __future__ import annotations

import pytest

from regswitch.registrar.bindings import Binding
from regswitch.registrar.contacts import (
    contact_key,
    contact_request,
    refuse_contacts,
    warn_agent,
)
from regswitch.registrar.policy import ContactRequest
from regswitch.sip.headers import Contact, parse_contact
from regswitch.sip.uri import parse_uri
from support.builders import make_binding


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:alice@EXAMPLE.com:5060", "sip:alice@example.com:5060"),  # host case
        ("sip:%61lice@example.com", "sip:alice@example.com"),  # escaped user
        ("sip:alice@example.com;transport=TCP", "sip:alice@example.com;transport=tcp"),
        ("sip:alice@example.com;ob", "sip:alice@example.com"),  # other params ignored
    ],
)
def test_contact_key_equal(a: str, b: str) -> None:
    assert contact_key(parse_uri(a)) == contact_key(parse_uri(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:Alice@example.com", "sip:alice@example.com"),  # user is case-sensitive
        ("sip:alice@example.com:5060", "sip:alice@example.com:5070"),
        ("sip:alice@example.com", "sip:alice@example.com;transport=tcp"),
        ("sip:alice@example.com", "sips:alice@example.com"),
    ],
)
def test_contact_key_differs(a: str, b: str) -> None:
    assert contact_key(parse_uri(a)) != contact_key(parse_uri(b))


def test_warn_agent_is_a_hostport() -> None:
    assert warn_agent("192.0.2.1", "example.com") == "192.0.2.1"
    assert warn_agent("2001:db8::1", "example.com") == "[2001:db8::1]"
    assert warn_agent("0.0.0.0", "example.com") == "example.com"
    assert warn_agent("::", "example.com") == "example.com"


def test_binding_flow_goes_to_the_contact_unless_behind_nat() -> None:
    def binding(contact: str, nat: bool, transport: str = "udp") -> Binding:
        return make_binding(
            contact=contact,
            nat=nat,
            transport=transport,
            source_ip="127.0.0.1",
            source_port=5071,
            conn_id=7,
        )

    # registered on behalf of a device on another port (SIPp's register_contact)
    assert binding("sip:uas@127.0.0.1:5072", nat=False).flow.remote == ("127.0.0.1", 5072)
    assert binding("sip:uas@127.0.0.1", nat=False).flow.remote == ("127.0.0.1", 5060)
    # behind NAT: only the source reaches it
    assert binding("sip:uas@192.168.1.9:5060", nat=True).flow.remote == ("127.0.0.1", 5071)
    # a host name is not resolved: the source it is
    assert binding("sip:uas@phone.example:5072", nat=False).flow.remote == ("127.0.0.1", 5071)
    # a connection: its own far end
    tcp = binding("sip:uas@127.0.0.1:5072;transport=tcp", nat=False, transport="tcp").flow
    assert tcp.remote == ("127.0.0.1", 5071) and tcp.conn_id == 7


def test_nat_detection_from_via_and_contact() -> None:
    from regswitch.registrar.contacts import behind_nat
    from regswitch.sip.flow import Flow
    from regswitch.sip.parse import parse_message

    def nat(via: str, contact: str, source: tuple[str, int]) -> bool:
        request = parse_message(
            (
                f"REGISTER sip:d SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK1\r\n"
                "From: <sip:a@d>;tag=1\r\nTo: <sip:a@d>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
                f"Contact: <{contact}>\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        flow = Flow("udp", source, ("127.0.0.1", 5060))
        return behind_nat(request, flow, request.contacts)  # type: ignore[union-attr]

    # the phone's own address is not where it came from: NAT
    assert nat("192.168.1.9:5060", "sip:a@192.168.1.9:5060", ("203.0.113.7", 40000))
    # Via right, but the Contact is a private address of another host: NAT
    assert nat("203.0.113.7:40000", "sip:a@10.1.2.3:5060", ("203.0.113.7", 40000))
    # a public device registering itself: not NAT
    assert not nat("203.0.113.7:5060", "sip:a@203.0.113.7:5060", ("203.0.113.7", 5060))
    # a registration for another port of the same host (SIPp register_contact): not NAT
    assert not nat("127.0.0.1:5071", "sip:uas@127.0.0.1:5072", ("127.0.0.1", 5071))


# -- contacts of one REGISTER (refuse_contacts) -------------------------------------------------


def _wanted(*uris: str, expires: int = 3600) -> list[ContactRequest]:
    return [contact_request(only_contact(u), expires) for u in uris]


def only_contact(uri: str) -> Contact:
    return parse_contact(f"<{uri}>")


def test_more_devices_in_one_register_than_max_contacts_are_refused() -> None:
    uris = [f"sip:a@192.0.2.1:{5060 + i}" for i in range(3)]
    hosts = ["192.0.2.1"] * 3
    refused = refuse_contacts(_wanted(*uris), hosts, "192.0.2.1", False, 1, False)
    assert refused == ("Too Many Contacts", "3 contacts in one REGISTER; the account allows 1")
    assert refuse_contacts(_wanted(*uris), hosts, "192.0.2.1", False, 3, False) is None
    # removals do not count
    assert refuse_contacts(_wanted(*uris, expires=0), hosts, "192.0.2.1", False, 1, False) is None


def test_a_contact_at_another_address_is_refused_unless_behind_nat_or_allowed() -> None:
    wanted = _wanted("sip:a@100.64.0.9")
    refused = refuse_contacts(wanted, ["100.64.0.9"], "192.0.2.1", False, 1, False)
    assert refused is not None and refused[0] == "Contact Not At Source"
    # behind NAT we send to the source anyway; names are never resolved
    assert refuse_contacts(wanted, ["100.64.0.9"], "192.0.2.1", True, 1, False) is None
    assert refuse_contacts(wanted, ["100.64.0.9"], "192.0.2.1", False, 1, True) is None
    named = _wanted("sip:a@phone.example")
    assert refuse_contacts(named, ["phone.example"], "192.0.2.1", False, 1, False) is None
    v6 = _wanted("sip:a@[2001:db8::1]:5070")
    assert refuse_contacts(v6, ["[2001:db8::1]"], "2001:db8:0::1", False, 1, False) is None
