"""The Registrar's kicker when the call layer is built after the Registrar.

The call layer authenticates its callers against the Registrar, so it exists
only once the Registrar does, yet the Registrar ends calls through it (a kick).
`KickerSlot` is the one object that closes that loop: the Registrar gets it at
construction, the composition root binds it once the call layer exists. A kick
before that is a wiring error and raises instead of silently ending no calls.
"""

from __future__ import annotations

from collections.abc import Callable

from regswitch.registrar.bindings import Binding

# (binding, reason) -> ids of the calls ended
Kicker = Callable[[Binding, str], list[str]]


class KickerSlot:
    def __init__(self) -> None:
        self._kick: Kicker | None = None

    def bind(self, kick: Kicker) -> None:
        if self._kick is not None:
            raise RuntimeError("the kicker is already bound")
        self._kick = kick

    def __call__(self, binding: Binding, reason: str) -> list[str]:
        if self._kick is None:
            raise RuntimeError("kick before the call layer was bound")
        return self._kick(binding, reason)
