"""Storage: typed interfaces (`base`) and backends (`sqlite`, `memory`).

The app imports `regswitch.storage` / `regswitch.storage.base` only; the
server picks a backend with `regswitch.storage.factory.open_storage(url)`.
"""

from regswitch.storage.base import (
    END_DIRECTIONS,
    END_REASONS,
    POLICY_VALUES,
    Account,
    AccountStore,
    BindingOp,
    BindingRecord,
    BindingStore,
    CdrFilter,
    CdrRecord,
    CdrStore,
    EventFilter,
    EventRecord,
    EventStore,
    NewEvent,
    ParamStore,
    Storage,
    StorageClosedError,
    StorageError,
    normalise_aor,
)

__all__ = [
    "END_DIRECTIONS",
    "END_REASONS",
    "POLICY_VALUES",
    "Account",
    "AccountStore",
    "BindingOp",
    "BindingRecord",
    "BindingStore",
    "CdrFilter",
    "CdrRecord",
    "CdrStore",
    "EventFilter",
    "EventRecord",
    "EventStore",
    "NewEvent",
    "ParamStore",
    "Storage",
    "StorageClosedError",
    "StorageError",
    "normalise_aor",
]
