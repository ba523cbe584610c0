"""The DefaultEncoding setting: how strings of files without SpecificCharacterSet are decoded.

It starts from the configuration and can be changed at run time through
``PUT /tools/default-encoding``, as in Orthanc (not persisted across restarts).
"""

from fastpacs.dicom.values import DEFAULT_ENCODINGS
from fastpacs.errors import ErrorCode, OrthancError


class DefaultEncoding:
    def __init__(self, name: str):
        self.name = self.validate(name)

    @staticmethod
    def validate(name: str) -> str:
        if name not in DEFAULT_ENCODINGS:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
        return name

    def set(self, name: str) -> None:
        self.name = self.validate(name)
