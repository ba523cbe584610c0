"""POST /instances/{id}/export: write an instance's DICOM file to a path of the server's file system.

As in Orthanc 1.10.1, the body is the path, and the route is refused (an
empty 403, whatever the instance) unless ``RestApiWriteToFileSystemEnabled``
allows it. A file that cannot be written there is Orthanc's 500 "Cannot
write to file"; the answer to a written one is ``{}``.
"""

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from litestar import Request, Response, post

from fastpacs.api.responses import empty_object, unknown_resource
from fastpacs.dicom.ids import parse_id
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.services.registry import Services
from fastpacs.storage.blobs import StoredBlob

logger = logging.getLogger(__name__)


@post("/instances/{resource_id:str}/export", name="instances-export", status_code=200)
async def export_instance(resource_id: str, request: Request, services: Services) -> Response[bytes]:
    if not services.config.rest_api_write_to_file_system_enabled:
        raise BareHttpError(403)
    rid = parse_id(resource_id)
    blob = None if rid is None else services.resources.instance_blob(rid)
    if blob is None:
        raise unknown_resource()
    target = (await request.body()).decode("utf-8", errors="replace")
    try:
        if blob.compressed:
            await asyncio.to_thread(_write_file, target, services.storage.read, blob)
        else:
            await asyncio.to_thread(shutil.copyfile, services.storage.path_of(blob.digest), target)
    except OSError as error:
        logger.warning("export of instance %s to %r failed: %s", resource_id, target, error)
        raise OrthancError(ErrorCode.CANNOT_WRITE_FILE) from None
    return empty_object()


def _write_file(target: str, read: Callable[[StoredBlob], bytes], blob: StoredBlob) -> None:
    """Write the content of a compressed blob to ``target`` (on a thread: it decompresses)."""
    Path(target).write_bytes(read(blob))
