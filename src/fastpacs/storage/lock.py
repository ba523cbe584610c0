"""One process at a time on a store: an exclusive lock on its index and storage folders.

A process that opens a store repairs it first (it removes half-written and
unindexed files, see :mod:`fastpacs.services.consistency`), which would
destroy the work in flight of another process on the same store. So whoever
opens a store (the server, ``fastpacs ingest --store``) holds an advisory
``flock`` on a ``fastpacs.lock`` file in each of its folders until it
closes it. The kernel drops the lock when the process dies, so a crash
never leaves a store locked.
"""

import contextlib
import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = "fastpacs.lock"
RETRY_SECONDS = 0.1


class StoreInUseError(Exception):
    """Another process holds the store."""


class StoreLock:
    def __init__(self, *folders: Path):
        unique = dict.fromkeys(folder.resolve() for folder in folders)
        self.paths = [folder / LOCK_FILE for folder in unique]
        self._descriptors: list[int] = []

    def acquire(self, timeout: float = 0.0) -> None:
        """Lock every folder, waiting up to ``timeout`` seconds; ``StoreInUseError`` if still held."""
        deadline = time.monotonic() + timeout
        try:
            for path in self.paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                self._descriptors.append(descriptor)
                while not _try_lock(descriptor):
                    if time.monotonic() >= deadline:
                        holder = path.read_text().strip() or "unknown"
                        raise StoreInUseError(f"{path.parent} is in use by another process (pid {holder})")
                    time.sleep(RETRY_SECONDS)
                os.ftruncate(descriptor, 0)
                os.write(descriptor, f"{os.getpid()}\n".encode())
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for descriptor in self._descriptors:
            with contextlib.suppress(OSError):
                os.close(descriptor)  # closing the descriptor drops its lock
        self._descriptors.clear()


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
