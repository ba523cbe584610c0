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
    modification: Modification, digests: list[bytes], default_encoding: str, transfer_syntax: str | None
) -> list[bytes | None]:
    """The modified files, in order, in ``transfer_syntax`` when given (``Transcode``); ``None`` for a
    file deleted since the request was accepted."""
    modified: list[bytes | None] = []
    for digest in digests:
        try:
            data = read_blob(digest)
        except FileNotFoundError:
            modified.append(None)
            continue
        modified.append(modify_file(modification, data, default_encoding, transfer_syntax))
    return modified


def modify_file(
    modification: Modification, data: bytes, default_encoding: str, transfer_syntax: str | None
) -> bytes:
    """One modified file, in ``transfer_syntax`` when given."""
    modified = modify(modification, data, default_encoding)
    return modified if transfer_syntax is None else transcode(modified, transfer_syntax)


def modify_stored_file(
    modification: Modification, digest: bytes, default_encoding: str, transfer_syntax: str | None
) -> bytes:
    """The modified file of one stored instance (the instance-level /modify and /anonymize)."""
    return modify_file(modification, read_blob(digest), default_encoding, transfer_syntax)
