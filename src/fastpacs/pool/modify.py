"""Modification and anonymization in the worker processes.

The server process sends the :class:`Modification` and the digests of the
stored files; each worker reads the files from the shared storage itself
and hands back the new files, a few at a time, through files of a spool
folder (:mod:`fastpacs.pool.spool`); the instance-level operations get the
new file's bytes in the answer.
"""

from fastpacs.dicom.modification import Modification, modify
from fastpacs.dicom.transcoding import transcode
from fastpacs.pool import spool
from fastpacs.pool.tasks import read_blob


def modify_stored(
    modification: Modification,
    digests: list[bytes],
    default_encoding: str,
    transfer_syntax: str | None,
    spool_folder: str,
) -> list[str | None]:
    """The modified files, in order, in ``transfer_syntax`` when given (``Transcode``), each written to
    a file of ``spool_folder`` whose path is returned (:mod:`fastpacs.pool.spool`: the server reads and
    removes it); ``None`` for a file deleted since the request was accepted."""
    spooled: list[str | None] = []
    try:
        for digest in digests:
            try:
                data = read_blob(digest)
            except FileNotFoundError:
                spooled.append(None)
                continue
            spooled.append(
                spool.write(spool_folder, modify_file(modification, data, default_encoding, transfer_syntax))
            )
    except BaseException:
        spool.discard(spooled)  # the caller gets the error, not the files written before it
        raise
    return spooled


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
