"""The kick (docs/behaviour.md §3.3): end every call of a removed binding's session.

- answered -> BYE to both parties;
- still ringing toward the kicked device -> CANCEL toward it, and 480 toward
  the caller once no other fork is left;
- unanswered call the kicked device placed -> CANCEL toward the callee, 487
  toward the device.
"""

from __future__ import annotations

from regswitch.calls.b2bua import B2BUA
from regswitch.calls.call import reason_header
from regswitch.registrar.bindings import Binding

# what the parties are told (RFC 3326 Reason text, reason phrase of the 480/487)
WHY = {
    "registration-replaced": "Registration replaced",
    "registration-deleted": "Registration deleted",
}


class Teardown:
    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua
        self.kicks = 0
        self.calls_ended = 0

    def kick(self, binding: Binding, reason: str) -> list[str]:
        """End the calls of `binding`; returns the ids of the calls ended."""
        self.kicks += 1
        return self.end_calls(binding.id, reason)

    def end_calls(self, binding_id: str, reason: str) -> list[str]:
        """End the calls of the binding `binding_id` held here (a kick decided
        on another cluster node names the binding only)."""
        b2bua = self.b2bua
        why = WHY.get(reason, "Registration removed")
        ended: list[str] = []
        for call in b2bua.calls_of(binding_id):
            if call.ended:
                continue
            if call.answered:
                on_call = call.caller_binding_id == binding_id or (
                    call.b is not None and call.b.binding_id == binding_id
                )
                if on_call:
                    b2bua.hang_up(call, reason, why=why)
                    ended.append(call.id)
                continue
            if call.caller_binding_id == binding_id:
                b2bua.hang_up(call, reason, why=why)  # CANCEL toward the callee, 487 toward it
                ended.append(call.id)
                continue
            forks = [leg for leg in call.active_forks() if leg.binding_id == binding_id]
            for leg in forks:
                b2bua.cancel_fork(leg, reason_header(why))
            if forks and not call.active_forks():
                call.stx.respond(480, why)
                b2bua.end_call(call, reason, "system", 480)
                ended.append(call.id)
        self.calls_ended += len(ended)
        return ended
