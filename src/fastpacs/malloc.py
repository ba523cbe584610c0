"""Tuning of the C allocator (glibc's malloc) of the server process.

glibc gives each new thread an arena of its own, up to eight per core,
and every arena keeps the memory freed in it for its next allocations.
The server's threads (the event loop, the index writer, the blob writes of
``asyncio.to_thread``, the DICOM associations, Granian's) seldom allocate at
the same time, since Python code runs one thread at a time: many arenas
spare them little waiting and hold tens of MB freed by one burst (a C-STORE
of 8 associations, an anonymization) that another arena never reuses.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""``mallopt`` parameter of glibc's ``malloc.h``."""


def limit_arenas(count: int) -> bool:
    """Let at most ``count`` arenas serve this process's threads from now on (0: glibc's default).

    Threads that already have an arena keep it, so this is called early, before
    the server starts its own threads. False where the C library is not glibc.
    """
    if count <= 0:
        return False
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = library.mallopt
    except (OSError, AttributeError):
        logger.info("MallocArenaMax is ignored: the C library is not glibc")
        return False
    return bool(mallopt(M_ARENA_MAX, count))
