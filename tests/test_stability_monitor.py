"""The stability monitor on its own: a check that fails does not end the checks that follow; a slow
one is logged."""

import asyncio
import logging
import re
from pathlib import Path

import pytest

from fastpacs.dicom.ids import Level
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate
from fastpacs.services import changes
from fastpacs.services.changes import StabilityMonitor

SERIES = bytes(20)


class FailingOnceWriter:
    """Runs each operation in a write transaction of its own, except the first, which fails as a
    refused commit does."""

    def __init__(self, database: Database):
        self.database = database
        self.calls = 0

    async def run(self, operation):
        self.calls += 1
        if self.calls == 1:
            raise OSError("no space left on device")
        with self.database.env.begin(write=True) as txn:
            return operation(IndexUpdate(txn, self.database.dbs, lambda digest: True))


class SlowWriter(FailingOnceWriter):
    """Commits each operation after ``delay`` seconds, as a writer behind a slow disk."""

    def __init__(self, database: Database, delay: float):
        super().__init__(database)
        self.calls = 1
        self.delay = delay

    async def run(self, operation):
        await asyncio.sleep(self.delay)
        return await super().run(operation)


def unstable_series(tmp_path: Path) -> Database:
    """An index holding one series, unstable since the epoch."""
    database = Database(tmp_path, 1)
    with database.env.begin(write=True) as txn:
        IndexUpdate(txn, database.dbs, lambda digest: True).touch(Level.SERIES, SERIES, moment=0.0)
    return database


async def watch_until_heard(monitor: StabilityMonitor, heard: list) -> None:
    monitor.start()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if heard:
            break
    await monitor.stop()


def test_a_failed_check_is_logged_and_the_next_one_logs_the_stable_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(changes, "STABILITY_CHECK_INTERVAL", 0.05)
    database = unstable_series(tmp_path)
    writer = FailingOnceWriter(database)
    monitor = StabilityMonitor(database, writer, stable_age=1)  # type: ignore[arg-type]
    heard = []
    monitor.listeners.append(lambda level, rid: heard.append((level, rid)))
    with caplog.at_level(logging.ERROR, logger="fastpacs.services.changes"):
        asyncio.run(watch_until_heard(monitor, heard))
    assert heard == [(Level.SERIES, SERIES)]
    assert writer.calls == 2
    assert "stability check failed" in caplog.text and "no space left on device" in caplog.text
    with database.read() as view:
        assert view.is_stable(SERIES)
        assert [change.change_type for _, change in view.changes(0, 10)] == ["StableSeries"]
    database.close()


def test_a_slow_check_is_logged_with_its_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(changes, "STABILITY_CHECK_INTERVAL", 0.05)
    monkeypatch.setattr(changes, "SLOW_CHECK_SECONDS", 0.2)
    database = unstable_series(tmp_path)
    monitor = StabilityMonitor(database, SlowWriter(database, delay=0.3), stable_age=1)  # type: ignore[arg-type]
    heard = []
    monitor.listeners.append(lambda level, rid: heard.append((level, rid)))
    with caplog.at_level(logging.WARNING, logger="fastpacs.services.changes"):
        asyncio.run(watch_until_heard(monitor, heard))
    assert heard == [(Level.SERIES, SERIES)]
    took = re.search(r"stability check took (\d+\.\d) s, waiting for the index writer", caplog.text)
    assert took is not None and float(took[1]) >= 0.3
    database.close()
