"""What every worker needs, loaded once in the process the workers are forked from.

The pool starts its workers with multiprocessing's ``forkserver`` method: a
new process (started from scratch, not forked from the server, which runs
threads, LMDB and Granian) imports this module, and each worker is then
forked from it with the worker modules already imported and the Numba
kernels loaded. Started with ``spawn``, every worker imported and loaded all
of it again, about 1.2 s of CPU each at every start of the server.

The objects made here are frozen out of the garbage collector's reach, so
that a worker's collections do not write to the pages it shares with its
siblings (copy-on-write).
"""

import gc

from fastpacs.imaging.warmup import warm_worker
from fastpacs.pool import (  # noqa: F401 - loaded here for the workers
    content,
    images,
    ingest_transcoding,
    modify,
    reconstruct,
    rendered,
    series,
    tasks,
)

warm_worker()
gc.freeze()
