"""Who may act in a call's dialogs (docs/behaviour.md §10; README "Security model: calls").

An in-dialog request belongs to a leg only when Call-ID, our tag and the peer's
tag all match, and it is accepted only from where that leg's party is known to
send from. From anywhere else the party must authenticate as the leg's account
before anything happens, and only then does the leg follow it there. A
stranger who learnt a dialog's identity can neither end the call nor re-point
its signalling or media.
"""

from __future__ import annotations

import logging
from typing import Protocol

from regswitch.calls.call import Call, Leg, source_of
from regswitch.sip.flow import Flow
from regswitch.sip.message import Request
from regswitch.transport.endpoint import IncomingRequest

log = logging.getLogger("regswitch.calls")


class Authenticator(Protocol):
    def authenticate_caller(self, stx: IncomingRequest) -> str | None: ...


class DialogGuard:
    def __init__(
        self, dialogs: dict[tuple[str, str], tuple[Call, Leg]], auth: Authenticator
    ) -> None:
        self.dialogs = dialogs  # (Call-ID, our tag) -> call and leg, kept by the B2BUA
        self.auth = auth
        self.refused = 0  # in-dialog requests and ACKs from a stranger's source

    def dialog_of(self, request: Request) -> tuple[Call, Leg] | None:
        """The leg whose dialog `request` is in: Call-ID, our tag and the peer's
        tag all match (RFC 3261 §12), not only what a stranger can learn from
        one of our messages to the other party."""
        tag = request.to.tag
        found = self.dialogs.get((request.call_id, tag)) if tag else None
        if found is None:
            return None
        remote_tag = found[1].dialog.remote_tag
        if remote_tag is None or remote_tag != request.from_.tag:
            return None
        return found

    def ack_from_party(self, leg: Leg, flow: Flow) -> bool:
        """An ACK cannot be challenged: from elsewhere it is dropped, or a
        stranger's late-offer answer would reach the other party."""
        if leg.knows(flow):
            return True
        self.refused += 1
        return False

    def admit(self, call: Call, leg: Leg, stx: IncomingRequest) -> bool:
        """Is this in-dialog request from the leg's party? From a known source, yes.
        From any other source only with the party's own credentials (digest 407,
        sent statelessly, or the account's allowed networks): then the leg follows
        the party there (a NAT rebinding). Anything else is answered and refused."""
        flow = stx.flow
        if leg.knows(flow):
            leg.flow = flow
            return True
        account = self.auth.authenticate_caller(stx)
        if account is None:
            self.refused += 1
            return False  # answered: 407 (or 403/503) by the registrar
        if account != call.account_of(leg):
            self.refused += 1
            stx.respond(403, "Forbidden")
            return False
        log.info("call %s: leg %s moved to %s (authenticated as %s)",
                 call.id, leg.name, flow.remote, account)
        leg.peers.add(source_of(flow))
        leg.flow = flow
        return True
