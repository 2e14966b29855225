"""/api/events/stream (Server-Sent Events) and /metrics (Prometheus text)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from regswitch.common.metrics import render
from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.routes.events import check_types, event_view
from regswitch.storage.base import normalise_aor

router = APIRouter()

HEARTBEAT = 15.0
# How often a stream with `stats` looks for a new dashboard sample.
STATS_CHECK = 1.0


@router.get("/api/events/stream", tags=["events"])
async def event_stream(
    request: Request,
    switch: SwitchDep,
    type: list[str] | None = Query(None, description="event type(s) to receive"),
    account: str | None = None,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    last_id: int | None = Query(
        None, description="resume after this event id (like Last-Event-ID)"
    ),
    stats: bool = Query(False, description="also `stats` frames: each new dashboard sample"),
) -> StreamingResponse:
    """Every event as it happens. Reconnect with Last-Event-ID to get what was missed
    (from a bounded backlog). A client that does not keep up is disconnected."""
    sampler = request.app.state.sampler if stats else None
    resume = last_id
    if last_event_id and last_event_id.strip().isdigit():
        resume = int(last_event_id.strip())
    types = [t for item in (type or []) for t in item.split(",") if t]
    check_types(types)
    sub = switch.events.subscribe(
        types or None, normalise_aor(account) if account else None, resume
    )

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            sent = sampler.seq if sampler is not None else 0
            quiet = 0.0
            while True:
                if sampler is not None and sampler.seq != sent:
                    sent = sampler.seq
                    point = json.dumps(sampler.latest())
                    yield f"event: stats\ndata: {point}\n\n".encode()
                wait = HEARTBEAT if sampler is None else STATS_CHECK
                try:
                    record = await asyncio.wait_for(sub.queue.get(), wait)
                except TimeoutError:
                    quiet += wait
                    if quiet < HEARTBEAT:
                        continue
                    quiet = 0.0
                    if await request.is_disconnected():
                        return
                    yield b": keepalive\n\n"
                    continue
                if record is None:  # dropped for being too slow
                    return
                data = json.dumps(event_view(record), default=str)
                yield f"id: {record.id}\nevent: {record.type}\ndata: {data}\n\n".encode()
        finally:
            switch.events.unsubscribe(sub)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(
        render(request.app.state.metrics), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
