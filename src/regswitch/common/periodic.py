"""A step run every few seconds on the event loop until stopped (expiry,
keepalives). A failing step is logged and the next one runs anyway."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable

log = logging.getLogger("regswitch.periodic")


class Periodic:
    def __init__(self, interval: float, step: Callable[[], object], name: str) -> None:
        self.interval = interval
        self.step = step
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                result = self.step()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s failed", self.name)


