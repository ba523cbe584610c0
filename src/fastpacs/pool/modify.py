"""Modification and anonymization in the worker processes.

The server process sends the :class:`Modification` and the digests of the
stored files; each worker reads the files from the shared storage itself
and sends back the new files' bytes, a batch at a time, so that one round
trip covers many instances.
"""

from fastpacs.dicom.modification import Modification, modify
from fastpacs.dicom.transcoding import transcode
from fastpacs.pool.tasks import read_blob


def modify_stored(
    modification: Modification, digests: list[bytes], default_encoding: str
) -> list[bytes | None]:
    """The modified files, in order; ``None`` for a file deleted since the request was accepted."""
    modified: list[bytes | None] = []
    for digest in digests:
        try:
            data = read_blob(digest)
        except FileNotFoundError:
            modified.append(None)
            continue
        modified.append(modify(modification, data, default_encoding))
    return modified


def modify_stored_file(
    modification: Modification, digest: bytes, default_encoding: str, transfer_syntax: str | None
) -> bytes:
    """One modified file, in ``transfer_syntax`` when given (``Transcode``)."""
    modified = modify(modification, read_blob(digest), default_encoding)
    return modified if transfer_syntax is None else transcode(modified, transfer_syntax)
