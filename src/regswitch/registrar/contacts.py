"""What a REGISTER's contacts and source say: comparison keys, the device's
NAT situation, and the Contact/Warning texts of replies."""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import unquote

from regswitch.registrar.bindings import Binding
from regswitch.registrar.policy import ContactRequest
from regswitch.sip.flow import Flow
from regswitch.sip.headers import Contact
from regswitch.sip.message import Request
from regswitch.sip.uri import URI


def contact_key(uri: URI) -> str:
    """Comparison form of a contact URI (the parts RFC 3261 §19.1.4 compares)."""
    transport = uri.params.get("transport")
    user = unquote(uri.user) if uri.user is not None else ""
    key = f"{uri.scheme}:{user}@{uri.host.lower()}:{uri.port or ''}"
    return f"{key};transport={transport.lower()}" if transport else key


def contact_request(contact: Contact, expires: int) -> ContactRequest:
    key = contact_key(contact.uri)
    return ContactRequest(
        uri=contact.uri_text,
        # most contacts are already in comparison form: a binding holds one
        # string for both
        key=contact.uri_text if key == contact.uri_text else key,
        expires=expires,
        instance=contact.instance,
        reg_id=contact.reg_id,
    )


def contact_line(b: Binding, now: float) -> str:
    line = f"<{b.contact}>;expires={b.expires_in(now)}"
    if b.instance:
        line += f';+sip.instance="{b.instance}"'
    if b.reg_id:
        line += f";reg-id={b.reg_id}"
    return line


def warn_agent(host: str, domain: str) -> str:
    """The warn-agent of a Warning (RFC 3261 §20.43): a hostport; not a wildcard bind."""
    if host in ("0.0.0.0", "::", ""):
        return domain
    return f"[{host}]" if ":" in host else host


def quote_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# host -> whether it is an address: phones keep sending the same few hosts,
# and parsing one with ipaddress on every REGISTER is not cheap
_LITERALS: dict[str, bool] = {}
LITERALS_REMEMBERED = 65_536


def is_ip_literal(host: str) -> bool:
    known = _LITERALS.get(host)
    if known is not None:
        return known
    try:
        ipaddress.ip_address(host.strip("[]"))
        literal = True
    except ValueError:
        literal = False
    if len(host) <= 64:  # any address is shorter: a stranger's long hosts are not kept
        if len(_LITERALS) >= LITERALS_REMEMBERED:
            _LITERALS.clear()
        _LITERALS[host] = literal
    return literal


def source_of(flow: Flow) -> str:
    return f"{flow.transport}:{flow.remote[0]}:{flow.remote[1]}"


def behind_nat(request: Request, flow: Flow, contacts: list[Contact]) -> bool:
    """Is the device behind NAT? (Kamailio's nat_uac_test does the same tests.)
    Yes when its own idea of its address, the top Via, is not where the
    REGISTER came from (RFC 3581's reasoning), or when its Contact names a
    private address on another host than the source. Otherwise the Contact is
    reachable as written: it may be a registration made for another port or
    host."""
    source_ip, source_port = flow.remote
    via = request.top_via
    port = via.port or (5061 if via.transport == "TLS" else 5060)
    if via.host.strip("[]") != source_ip or port != source_port:
        return True
    for contact in contacts:
        host = contact.uri.host.strip("[]")
        if host != source_ip and private(host):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def private(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return False  # a name


def refuse_contacts(
    wanted: list[ContactRequest],
    hosts: list[str],
    source_ip: str,
    nat: bool,
    max_contacts: int,
    third_party: bool,
) -> tuple[str, str] | None:
    """(reason phrase, explanation) when the contacts of one REGISTER may not
    be registered, else None. `hosts` are the contacts' hosts, in order.

    - more devices in the request than the account's max_contacts: the
      replace policy works between requests, so one request must not bring
      more than the account may hold;
    - a contact at another IP address than the source, when we would send
      to that address (not behind NAT: see Binding.flow): INVITEs and
      keepalives must not go to a third party, unless the operator allows
      registrations on behalf of others (REGISTER_THIRD_PARTY_CONTACTS).
    """
    adding = [(c, host) for c, host in zip(wanted, hosts, strict=True) if c.expires > 0]
    devices = {c.instance or c.key for c, _ in adding}
    if len(devices) > max_contacts:
        return (
            "Too Many Contacts",
            f"{len(devices)} contacts in one REGISTER; the account allows {max_contacts}",
        )
    if nat or third_party:
        return None
    for c, host in adding:
        if is_ip_literal(host) and not _same_ip(host, source_ip):
            return (
                "Contact Not At Source",
                f"contact {c.uri} is not at the source address {source_ip}",
            )
    return None


def _same_ip(a: str, b: str) -> bool:
    if a == b:
        return True  # the usual case, without parsing either
    return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
