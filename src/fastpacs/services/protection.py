"""/patients/{id}/protected: patients kept out of the recycling of old data.

Orthanc recycles the oldest patients when ``MaximumStorageSize`` or
``MaximumPatientCount`` is reached, except protected ones. The flag is
kept in the index and goes with the patient when it is deleted.
"""

from fastpacs.dicom.ids import Level, RawId
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import set_protected
from fastpacs.index.writer import IndexWriter
from fastpacs.services.request_fields import boolean_body


class ProtectionService:
    def __init__(self, database: Database, writer: IndexWriter):
        self.database = database
        self.writer = writer

    def is_protected(self, rid: RawId) -> bool:
        """Whether a patient is protected; Orthanc's "Parameter out of range" for an unknown patient."""
        with self.database.read() as view:
            if view.resource_at(rid, Level.PATIENT) is None:
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
            return view.txn.get(rid, db=view.dbs["protected"]) is not None

    async def set(self, rid: RawId, text: str) -> None:
        """Protect (``1``, ``true``) or unprotect (``0``, ``false``) a patient."""
        protected = boolean_body(text.encode())
        try:
            await self.writer.run(lambda update: set_protected(update, rid, protected))
        except KeyError:
            raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE) from None
