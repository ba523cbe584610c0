"""Tuning of the C allocator (glibc's malloc) of the server and worker processes.

glibc gives each new thread an arena of its own, up to eight per core,
and every arena keeps the memory freed in it for its next allocations.
The server's threads (the event loop, the index writer, the blob writes of
``asyncio.to_thread``, the DICOM associations, Granian's) seldom allocate at
the same time, since Python code runs one thread at a time: many arenas
spare them little waiting and hold tens of MB freed by one burst (a C-STORE
of 8 associations, an anonymization) that another arena never reuses.

glibc also gives back to the system, at once, every block freed above its
mapping threshold and every free stretch at the top of its heap beyond its
trim threshold (about 1 MB once a file-sized block has been freed). A file
of a few hundred KB read, modified and written allocates and frees such
blocks several times, and each time the memory came back as new pages,
faulted in and zeroed one by one: about 200 page faults per CT slice
anonymized, a third of the worker's time. The workers keep them
(:func:`keep_file_buffers`) and reuse them as they are; the server process,
where no gain was measured, keeps glibc's defaults and its memory as it was.
"""

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""``mallopt`` parameters of glibc's ``malloc.h``."""
FILE_BUFFER_MAPPING_THRESHOLD = 4 << 20
"""Blocks up to 4 MB (a CT, MR or ultrasound image) come from the heap, and are reused once freed;
larger ones (multi-frame files) are still mapped and given back as soon as freed."""
FILE_BUFFER_TRIM_THRESHOLD = 8 << 20
"""At most 8 MB freed at the top of the heap are kept for the next files."""


def limit_arenas(count: int) -> bool:
    """Let at most ``count`` arenas serve this process's threads from now on (0: glibc's default).

    Threads that already have an arena keep it, so this is called early, before
    the server starts its own threads. False where the C library is not glibc.
    """
    if count <= 0:
        return False
    mallopt = _mallopt("MallocArenaMax")
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, count))


def keep_file_buffers() -> bool:
    """Keep the blocks of file-sized buffers freed by this process for its next allocations, instead
    of giving them back to the system (see the module's documentation). False where the C library
    is not glibc."""
    mallopt = _mallopt("The reuse of freed file buffers")
    return (
        mallopt is not None
        and bool(mallopt(M_MMAP_THRESHOLD, FILE_BUFFER_MAPPING_THRESHOLD))
        and bool(mallopt(M_TRIM_THRESHOLD, FILE_BUFFER_TRIM_THRESHOLD))
    )


def _mallopt(what: str) -> Callable[[int, int], int] | None:
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return library.mallopt
    except (OSError, AttributeError):
        logger.info("%s is left to the C library, which is not glibc", what)
        return None
