"""Changing the transfer syntax of a file (the ``Transcode`` option of /modify).

pydicom does the work: compressed pixel data is decoded with the installed
decoders, and encoded again when the target is a compressed syntax pydicom
can write (RLE Lossless, JPEG 2000 Lossless). A target no encoder can
produce gets Orthanc's answer, a 500 "Cannot transcode to transfer syntax".
Runs in the worker pool.
"""

import io

from pydicom.errors import InvalidDicomError
from pydicom.filereader import dcmread
from pydicom.uid import UID, AllTransferSyntaxes

from fastpacs.dicom.writer import file_meta
from fastpacs.errors import ErrorCode, OrthancError

_FAILURES = (
    InvalidDicomError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
)
"""What pydicom's decoders and encoders raise on a conversion they cannot do."""


def check_transfer_syntax(uid: str) -> str:
    """A transfer syntax UID fastpacs knows; Orthanc's 400 for any other text."""
    if uid not in AllTransferSyntaxes:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown transfer syntax: {uid}")
    return uid


def transcode(data: bytes, transfer_syntax: str) -> bytes:
    """``data`` in ``transfer_syntax`` (unchanged when already there)."""
    target = UID(transfer_syntax)
    dataset = dcmread(io.BytesIO(data), force=True)
    current = UID(str(dataset.file_meta.get("TransferSyntaxUID", "")))
    if current == target:
        return data
    try:
        if current.is_compressed:
            dataset.decompress(generate_instance_uid=False)
        if target.is_compressed:
            dataset.compress(target, generate_instance_uid=False)
        dataset.file_meta = file_meta(str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), str(target))
        output = io.BytesIO()
        dataset.save_as(
            output,
            implicit_vr=target.is_implicit_VR,
            little_endian=target.is_little_endian,
            enforce_file_format=True,
        )
    except _FAILURES as error:
        raise OrthancError(
            ErrorCode.INTERNAL_ERROR, f"Cannot transcode to transfer syntax: {target}"
        ) from error
    return output.getvalue()
