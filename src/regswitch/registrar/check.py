"""Steps 1–5 of a REGISTER (docs/behaviour.md §3): validation, flood, account,
IP networks, digest, expires; and who places an INVITE (§4). They change no
binding: a request that fails one is answered here (with its counter, event
and flood accounting) and goes no further; a REGISTER that passes becomes a
`Checked`, which the registrar applies under its account's turn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from regswitch.common.params import Params
from regswitch.protection.flood import FloodGuard
from regswitch.registrar.accounts import AccountEntry, Accounts
from regswitch.registrar.auth import BLOCKED, Authenticator
from regswitch.registrar.contacts import behind_nat, contact_request, refuse_contacts, source_of
from regswitch.registrar.policy import ContactRequest, RegisterRequest
from regswitch.registrar.replies import Replies
from regswitch.sip.uri import URI
from regswitch.storage.base import shared
from regswitch.transport.endpoint import IncomingRequest


class Checked:
    """A REGISTER that passed steps 1–5, waiting for its account's turn."""

    __slots__ = ("confirmed", "contacts", "entry", "extra", "nonce", "req", "stx")

    def __init__(
        self,
        stx: IncomingRequest,
        req: RegisterRequest,
        contacts: list[ContactRequest] | None,
        entry: AccountEntry,
        extra: dict[str, str],
        nonce: tuple[str, int] | None = None,
    ) -> None:
        self.stx = stx
        self.req = req
        self.contacts = contacts
        self.entry = entry
        self.extra = extra
        self.nonce = nonce  # the digest's nonce and count, if authenticated by digest
        self.confirmed = False


class Checks:
    """The checks of a REGISTER, and of the caller of an INVITE."""

    def __init__(
        self,
        *,
        aor_of: Callable[[URI], str | None],
        accounts: Accounts,
        auth: Authenticator,
        flood: FloodGuard,
        params: Params,
        replies: Replies,
        results: Counter[str],
        node: str,
        read_account: Callable[[IncomingRequest, str, float], None],
    ) -> None:
        self.aor_of = aor_of
        self.accounts = accounts
        self.auth = auth
        self.flood = flood
        self.params = params
        self.replies = replies
        self.results = results
        self.node = node
        self.read_account = read_account

    def register(self, stx: IncomingRequest, now: float) -> Checked | None:
        """The REGISTER's checks, in order; None when it was refused or
        challenged (and answered)."""
        request = stx.request
        flow = stx.flow
        ip = flow.remote[0]
        flood = self.flood
        if flood.blocked(ip, now):
            self.replies.refuse_blocked(stx)
            return None

        # 1. validation (a ParseError from a lazy header read becomes a 400 in the endpoint):
        # the whole message first, so a malformed one is a 400 whatever its domain
        to_uri = request.to.uri
        star = request.contact_is_star
        contacts = request.contacts
        header_expires = request.expires
        aor = self.aor_of(to_uri)
        if aor is None:
            self.results["forbidden-domain"] += 1
            if not self.replies.count_unauthenticated(stx, ip, now):
                stx.respond(403, "Domain Not Served")
            return None
        if star and (header_expires != 0 or len(request.headers.values("contact")) != 1):
            self.results["bad-request"] += 1
            if not self.replies.count_unauthenticated(stx, ip, now):
                stx.respond(400, "Contact * requires Expires: 0 and no other contact")
            return None
        call_id = request.call_id
        cseq = request.cseq.seq

        # 3. account and IP authentication. Unknown, disabled and out-of-network
        # are checked like a wrong password (nonce first, one answer for all):
        # the replies tell nothing about which accounts exist.
        entry = self.accounts.get(aor)
        if entry is None and self.accounts.unheard(aor, now) and "authorization" in request.headers:
            # created through another cluster node an instant ago? Read it, then
            # check again (credentials only: the first REGISTER is challenged anyway)
            self.read_account(stx, aor, now)
            return None
        refuse = ""
        if entry is None or not entry.account.enabled:
            refuse = "unknown or disabled account"
        elif entry.networks and not entry.allows(ip):
            refuse = f"source {ip} outside the account's allowed networks"
        # 4. digest (skipped for an IP-only account: networks and no password)
        answered = False
        nonce = None
        if refuse or entry is None or entry.account.ha1_md5:
            result = self.auth.check(
                request,
                None if refuse or entry is None else entry.account,
                source=flood.key(ip),
                realm=aor.partition("@")[2],
                refuse=refuse,
                known_nonce_only=flood.account_blocked(ip, aor, now),
            )
            if result.outcome == "challenge":
                if result.reason:
                    self.results["auth-stale"] += 1
                self.replies.challenge(stx, aor.partition("@")[2], result.stale, account=aor)
                return None
            if result.reason == BLOCKED:
                self.replies.refuse_account_blocked(stx, ip, now)
                return None
            if result.outcome == "forbidden":
                self.replies.auth_failed(stx, aor, ip, source_of(flow), result.reason)
                return None
            answered = result.answered
            nonce = result.nonce
        elif flood.account_blocked(ip, aor, now):
            # address-only, after return-path checks that failed from here
            self.replies.refuse_account_blocked(stx, ip, now)
            return None
        assert entry is not None
        aor = entry.aor  # the same text, as the account's one string
        notice = flood.authenticated(ip, aor, now, answered)
        if notice is not None:
            self.replies.notice(notice)
            self.replies.refuse_blocked(stx)
            return None

        # 5. expires per contact
        wanted: list[ContactRequest] | None
        outbound = False
        nat = behind_nat(request, flow, contacts)
        if star:
            wanted = None
        else:
            wanted = []
            maximum = self.params.values["SS_ENDPOINT_EXPIRE"]
            minimum = self.params.values["SS_ENDPOINT_MIN_EXPIRE"]
            for contact in contacts:
                requested = contact.expires
                if requested is None:
                    requested = header_expires if header_expires is not None else maximum
                if 0 < requested < minimum:
                    self.results["interval-too-brief"] += 1
                    stx.respond(423, None, {"Min-Expires": str(minimum)})
                    return None
                wanted.append(contact_request(contact, min(requested, maximum)))
                outbound = outbound or contact.reg_id is not None
            refused = refuse_contacts(
                wanted,
                [c.uri.host for c in contacts],
                ip,
                nat,
                entry.account.max_contacts,
                self.params.values["REGISTER_THIRD_PARTY_CONTACTS"],
            )
            if refused is not None:
                self.replies.refuse_contacts(stx, aor, source_of(flow), refused)
                return None

        register = RegisterRequest(
            aor=aor,
            call_id=call_id,
            cseq=cseq,
            transport=flow.transport,
            source_ip=ip,
            source_port=flow.remote[1],
            local_ip=flow.local[0],
            local_port=flow.local[1],
            conn_id=flow.conn_id,
            # phones of one model send one text: their bindings share it
            user_agent=shared(request.headers.get("user-agent")),
            path=tuple(request.headers.values("path")) if "path" in request.headers else (),
            now=now,
            node=self.node,
            nat=nat,
        )
        extra: dict[str, str] = {}
        if outbound and "outbound" in (request.headers.get("supported") or ""):
            extra["Require"] = "outbound"
        return Checked(stx, register, wanted, entry, extra, nonce)

    def caller(self, stx: IncomingRequest, now: float, uri: URI | None = None) -> str | None:
        """Who places this INVITE (docs/behaviour.md §4): the From account (or `uri`'s: the AOR
        a reg SUBSCRIBE watches), by its allowed network or by digest (407).
        Answers and returns None when refused."""
        request = stx.request
        flow = stx.flow
        ip = flow.remote[0]
        if self.flood.blocked(ip, now):
            self.replies.refuse_blocked(stx)
            return None
        source = source_of(flow)
        aor = self.aor_of(uri or request.from_.uri)
        entry = self.accounts.get(aor) if aor else None
        if aor is None or entry is None or not entry.account.enabled:
            if aor is not None and not request.headers.get("proxy-authorization"):
                self.replies.challenge(stx, aor.partition("@")[2], proxy=True, account=aor)
                return None
            self.replies.auth_failed(
                stx, aor or (uri or request.from_.uri).aor, ip, source, "unknown or disabled caller"
            )
            return None
        if entry.networks:
            if entry.allows(ip):
                return aor
            self.replies.auth_failed(
                stx, aor, ip, source, f"source {ip} outside the account's allowed networks"
            )
            return None
        result = self.auth.check(
            request, entry.account, "proxy-authorization", source=self.flood.key(ip)
        )
        if result.outcome == "ok":
            # the 407 was answered: taken back from the unauthenticated volume
            notice = self.flood.authenticated(ip, aor, now, result.answered)
            if notice is not None:
                self.replies.notice(notice)
                self.replies.refuse_blocked(stx)
                return None
            return aor
        if result.outcome == "challenge":
            self.replies.challenge(stx, entry.account.domain, result.stale, proxy=True, account=aor)
        else:
            self.replies.auth_failed(stx, aor, ip, source, result.reason)
        return None
