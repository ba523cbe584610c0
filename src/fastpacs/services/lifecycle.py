"""/tools/reset and /tools/shutdown: restart or stop the server from the REST API.

Both are refused (403) unless enabled in the configuration, with the
fastpacs options ``RestApiResetEnabled`` and ``RestApiShutdownEnabled``
(Orthanc 1.10.1 always allows them, which lets any client with access to
the API stop the archive).

``fastpacs serve`` runs the application in a worker process of Granian. A
shutdown asks Granian's main process to stop (SIGTERM: requests in flight
finish, then every component stops in order); a reset asks it to restart
the worker (SIGHUP: the index, the worker pool and the DICOM server are
closed and opened again). The configuration is read by ``fastpacs serve``
only, so a reset does not re-read it. The signal is sent once the answer
has gone out.
"""

import asyncio
import logging
import os
import signal
from pathlib import Path

from fastpacs.errors import BareHttpError

logger = logging.getLogger(__name__)

SIGNAL_DELAY = 0.2
"""Seconds between the answer and the signal, so that the answer reaches the client."""


def _server_process() -> int:
    """The process to signal: Granian's main process when it runs this worker, else this process."""
    parent = os.getppid()
    try:
        command = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return os.getpid()
    is_fastpacs_serve = b"serve" in command and any(part.endswith(b"fastpacs") for part in command)
    return parent if is_fastpacs_serve else os.getpid()


class ServerLifecycle:
    def __init__(self, reset_enabled: bool, shutdown_enabled: bool):
        self.reset_enabled = reset_enabled
        self.shutdown_enabled = shutdown_enabled

    def _schedule(self, signal_number: int) -> None:
        target = _server_process()
        asyncio.get_running_loop().call_later(SIGNAL_DELAY, os.kill, target, signal_number)

    def shutdown(self) -> None:
        if not self.shutdown_enabled:
            logger.warning("POST /tools/shutdown refused: set RestApiShutdownEnabled to allow it")
            raise BareHttpError(403)
        logger.warning("shutdown requested through the REST API")
        self._schedule(signal.SIGTERM)

    def reset(self) -> None:
        if not self.reset_enabled:
            logger.warning("POST /tools/reset refused: set RestApiResetEnabled to allow it")
            raise BareHttpError(403)
        logger.warning("restart requested through the REST API")
        self._schedule(signal.SIGHUP)
