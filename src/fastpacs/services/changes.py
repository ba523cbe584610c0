"""The change log (/changes) and the stability monitor that adds Stable* events to it."""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.index.database import Database
from fastpacs.index.schema import UNSTABLE_DECODER, Counter
from fastpacs.index.updates import IndexUpdate, clear_changes, log_stable_resources
from fastpacs.index.writer import IndexWriter, WriterStoppedError
from fastpacs.services.resources import resource_path

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
STABILITY_CHECK_INTERVAL = 1.0
SLOW_CHECK_SECONDS = 10.0
"""A check that takes longer is logged: resources become stable that much later than StableAge."""


class ChangeService:
    def __init__(self, database: Database, writer: IndexWriter):
        self.database = database
        self.writer = writer

    def changes(self, since: int, limit: int, last_only: bool) -> dict[str, Any]:
        """Orthanc's ``{"Changes": [...], "Done": ..., "Last": ...}``."""
        with self.database.read() as view:
            if last_only:
                newest = view.last_change()
                entries = [] if newest is None else [newest]
                done = True
            else:
                entries = list(view.changes(since, limit + 1))
                done = limit > 0 and len(entries) <= limit
                entries = entries[:limit]
            last = entries[-1][0] if entries else view.counter(Counter.LAST_CHANGE)
        return {
            "Changes": [
                {
                    "ChangeType": change.change_type,
                    "Date": change.date,
                    "ID": format_id(change.resource),
                    "Path": resource_path(Level(change.level), change.resource),
                    "ResourceType": Level(change.level).type_name,
                    "Seq": seq,
                }
                for seq, change in entries
            ],
            "Done": done,
            "Last": last,
        }

    async def clear(self) -> None:
        await self.writer.run(clear_changes)


def _log_stable(update: IndexUpdate, now: float, stable_age: float) -> list[tuple[Level, RawId]]:
    """Log the Stable* changes due; the resources that became stable, in the order logged."""
    last = update.counter(Counter.LAST_CHANGE)
    logged = log_stable_resources(update, now, stable_age)
    return [(Level(change.level), change.resource) for _, change in update.changes(last, logged)]


class StabilityMonitor:
    """Logs StableSeries/StableStudy/StablePatient once a resource has had no new instance for StableAge.

    Its ``listeners`` hear of each resource that became stable, once the change is committed
    (Lua's OnStable* callbacks).
    """

    def __init__(self, database: Database, writer: IndexWriter, stable_age: int):
        self.database = database
        self.writer = writer
        self.stable_age = stable_age
        self._task: asyncio.Task | None = None
        self.listeners: list[Callable[[Level, RawId], None]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stability-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _anything_due(self, now: float) -> bool:
        with self.database.read() as view:
            cursor = view.txn.cursor(db=view.dbs["unstable"])
            return any(
                UNSTABLE_DECODER.decode(value).last_update + self.stable_age <= now
                for value in cursor.iternext(keys=False)
            )

    async def _run(self) -> None:
        """Check every :data:`STABILITY_CHECK_INTERVAL` until stopped (or the writer is); say when a
        check was slow.

        A check that fails (a commit refused, a listener failing) is logged and the next one tries
        again: the task would otherwise end in silence, and no resource would become stable for
        the rest of the server's life.
        """
        while True:
            await asyncio.sleep(STABILITY_CHECK_INTERVAL)
            started = time.monotonic()
            try:
                await self._check(time.time())
            except WriterStoppedError:
                return
            except Exception:  # logged, with its traceback; the next check tries again
                logger.exception("stability check failed")
            took = time.monotonic() - started
            if took > SLOW_CHECK_SECONDS:
                logger.warning("stability check took %.1f s, waiting for the index writer to commit", took)

    async def _check(self, now: float) -> None:
        if not self._anything_due(now):
            return
        stable = await self.writer.run(lambda update: _log_stable(update, now, self.stable_age))
        for level, rid in stable:
            for listener in self.listeners:
                listener(level, rid)
