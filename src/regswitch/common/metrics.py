"""Prometheus metrics, read at scrape time from the services' own counters.

Nothing on the SIP hot path touches prometheus-client: services keep plain
counters, and this collector turns a snapshot of them into metric families.
Label values come from closed sets (results, methods, reasons), so the
series count stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "regswitch"


@dataclass
class Snapshot:
    """Everything exported, gathered in one pass by the switch."""

    bindings: int = 0
    accounts: int = 0
    register_results: Mapping[str, int] = field(default_factory=dict)
    kicks: int = 0
    calls_ended_by_kick: int = 0
    calls_active: int = 0
    calls_started: int = 0
    cdrs_by_reason: Mapping[str, int] = field(default_factory=dict)
    transactions: Mapping[str, int] = field(default_factory=dict)
    retransmissions: int = 0
    retransmissions_absorbed: int = 0
    server_transactions_live: int = 0
    client_transactions_live: int = 0
    parse_errors: Mapping[str, int] = field(default_factory=dict)
    requests_by_method: Mapping[str, int] = field(default_factory=dict)
    responses_by_status: Mapping[int, int] = field(default_factory=dict)
    flood_blocks: int = 0
    flood_dropped: int = 0
    flood_blocked_sources: int = 0
    events_by_type: Mapping[str, int] = field(default_factory=dict)
    events_suppressed: Mapping[str, int] = field(default_factory=dict)
    event_stream_clients: int = 0
    event_stream_clients_dropped: int = 0
    keepalives_sent: int = 0
    keepalive_replies: int = 0
    keepalives_received: Mapping[str, int] = field(default_factory=dict)
    unreachable_bindings: int = 0
    storage: Mapping[str, float] = field(default_factory=dict)
    transport: Mapping[str, int] = field(default_factory=dict)
    loop_lag_seconds: float = 0.0
    hep_sent: int = 0
    hep_dropped: int = 0
    # README "Why was I signed out?": the kicked device's MESSAGE, reg subscriptions,
    # credential sharing
    kick_messages: Mapping[str, int] = field(default_factory=dict)
    reg_subscriptions: int = 0
    reg_event_results: Mapping[str, int] = field(default_factory=dict)
    sharing_suspected_accounts: int = 0
    sharing_locked_accounts: int = 0


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _labelled_counter(
    name: str, doc: str, label: str, values: Mapping[Any, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
        family.add_metric([str(key)], value)
    return family


class SwitchCollector(Collector):
    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        yield _gauge("bindings", "Current registrations (bindings).", s.bindings)
        yield _gauge("accounts", "Configured accounts.", s.accounts)
        yield _labelled_counter(
            "register", "REGISTER requests by result.", "result", s.register_results
        )
        yield _counter("kicks", "Bindings removed with their calls ended (kicks).", s.kicks)
        yield _counter("calls_ended_by_kick", "Calls ended by kicks.", s.calls_ended_by_kick)
        yield _gauge("calls_active", "Calls in progress.", s.calls_active)
        yield _counter("calls_started", "Calls started (forks sent).", s.calls_started)
        yield _labelled_counter("cdrs", "CDRs written, by end reason.", "reason", s.cdrs_by_reason)
        yield _labelled_counter(
            "transactions", "SIP transactions created, by kind.", "kind", s.transactions
        )
        yield _counter("retransmissions", "SIP retransmissions sent.", s.retransmissions)
        yield _counter(
            "retransmissions_absorbed",
            "Retransmitted requests absorbed.",
            s.retransmissions_absorbed,
        )
        yield _gauge("server_transactions", "Live server transactions.", s.server_transactions_live)
        yield _gauge("client_transactions", "Live client transactions.", s.client_transactions_live)
        yield _labelled_counter(
            "parse_errors", "Messages that failed to parse.", "kind", s.parse_errors
        )
        yield _labelled_counter(
            "sip_requests", "SIP requests received, by method.", "method", s.requests_by_method
        )
        yield _labelled_counter(
            "sip_responses", "SIP responses sent, by status.", "status", s.responses_by_status
        )
        yield _counter("flood_blocks", "Sources blocked by flood protection.", s.flood_blocks)
        yield _counter("flood_dropped", "Requests dropped from blocked sources.", s.flood_dropped)
        yield _gauge("flood_blocked_sources", "Sources blocked right now.", s.flood_blocked_sources)
        yield _labelled_counter("events", "Events recorded, by type.", "type", s.events_by_type)
        yield _labelled_counter(
            "events_suppressed",
            "Failure events not written (over the per-source rate), by type.",
            "type",
            s.events_suppressed,
        )
        yield _gauge(
            "event_stream_clients", "Live event-stream (SSE) clients.", s.event_stream_clients
        )
        yield _counter(
            "event_stream_clients_dropped",
            "SSE clients dropped for not keeping up.",
            s.event_stream_clients_dropped,
        )
        yield _counter("keepalives_sent", "NAT keepalives and probes sent.", s.keepalives_sent)
        yield _counter("keepalive_replies", "Replies to OPTIONS keepalives.", s.keepalive_replies)
        yield _labelled_counter(
            "keepalives_received",
            "CRLF keepalives received from phones (not parse errors), by transport.",
            "transport",
            s.keepalives_received,
        )
        yield _gauge("unreachable_bindings", "Bindings marked unreachable.", s.unreachable_bindings)
        yield _gauge("loop_lag_seconds", "Event-loop lag at the last check.", s.loop_lag_seconds)
        yield _counter("hep_packets", "HEP capture packets sent to the collector.", s.hep_sent)
        yield _counter(
            "hep_dropped", "HEP capture packets dropped (socket buffer full).", s.hep_dropped
        )
        yield _labelled_counter(
            "kick_messages",
            "MESSAGEs to kicked devices (REGISTER_REPLACE_NOTIFY_OLD), by result.",
            "result",
            s.kick_messages,
        )
        yield _gauge(
            "reg_subscriptions", "reg event subscriptions (RFC 3680).", s.reg_subscriptions
        )
        yield _labelled_counter(
            "reg_event",
            "reg event SUBSCRIBEs and NOTIFYs by result (accepted, refused-489, notify, ...).",
            "result",
            s.reg_event_results,
        )
        yield _gauge(
            "sharing_suspected_accounts",
            "Accounts suspected of credential sharing within SHARING_WINDOW.",
            s.sharing_suspected_accounts,
        )
        yield _gauge(
            "sharing_locked_accounts",
            "Accounts locked for credential sharing right now.",
            s.sharing_locked_accounts,
        )
        storage = GaugeMetricFamily(
            f"{PREFIX}_storage", "Storage counters and queue depths.", labels=["stat"]
        )
        for key, value in sorted(s.storage.items()):
            storage.add_metric([key], float(value))
        yield storage
        transport = GaugeMetricFamily(f"{PREFIX}_transport", "Transport counters.", labels=["stat"])
        for key, value in sorted(s.transport.items()):
            transport.add_metric([key], float(value))
        yield transport


def build_registry(read: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(read))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
