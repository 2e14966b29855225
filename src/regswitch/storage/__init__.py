"""Storage: typed interfaces (`base`) and backends (`sqlite`, `memory`).

The app imports `regswitch.storage.base` only; the server picks a backend
with `regswitch.storage.factory.open_storage(url)`.
"""
