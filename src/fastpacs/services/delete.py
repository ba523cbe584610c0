"""Deleting resources: the index first, then the blobs nobody references any more."""

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.index.updates import delete_resource
from fastpacs.index.writer import IndexWriter
from fastpacs.services.resources import ResourceJson, resource_path


class DeleteService:
    def __init__(self, writer: IndexWriter):
        self.writer = writer

    async def delete(self, level: Level, rid: RawId) -> ResourceJson | None:
        """Delete a resource with its descendants; ``KeyError`` if it does not exist.

        Returns Orthanc's ``RemainingAncestor`` object, or ``None`` when the whole
        branch up to the patient is gone.
        """
        remaining = await self.writer.run(lambda update: delete_resource(update, level, rid))
        if remaining is None:
            return None
        ancestor_level, ancestor = remaining
        return {
            "ID": format_id(ancestor),
            "Path": resource_path(ancestor_level, ancestor),
            "Type": ancestor_level.type_name,
        }
