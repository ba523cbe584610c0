"""Uploads (POST /instances) and the stored file of an instance."""

from litestar import Request, Response, get, post

from fastpacs.api.responses import (
    content_response,
    json_response,
    parse_integer,
    takes_deflate,
    unknown_resource,
)
from fastpacs.dicom.ids import Level, format_id, parse_id
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.updates import IngestOutcome
from fastpacs.services.ingest import Origin
from fastpacs.services.registry import Services
from fastpacs.services.resources import resource_path


def upload_answer(outcome: IngestOutcome) -> dict[str, str]:
    """Orthanc's answer to one stored instance."""
    patient, study, series, instance = outcome.ids
    return {
        "ID": format_id(instance),
        "ParentPatient": format_id(patient),
        "ParentSeries": format_id(series),
        "ParentStudy": format_id(study),
        "Path": resource_path(Level.INSTANCE, instance),
        "Status": outcome.status,
    }


def file_answer(outcome: IngestOutcome | list[IngestOutcome]) -> dict[str, str] | list[dict[str, str]]:
    """The answer to an upload of one file: its instance, or the list of a ZIP archive's."""
    if isinstance(outcome, list):
        return [upload_answer(item) for item in outcome]
    return upload_answer(outcome)


async def _uploaded_files(request: Request) -> list[bytes]:
    """The files of the body: the body itself, or each part of a multipart/form-data body."""
    if request.content_type[0] == "multipart/form-data":
        form = await request.form()
        files = [await part.read() for _, part in form.multi_items() if hasattr(part, "read")]
        if not files:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "No file in the multipart body")
        return files
    return [await request.body()]


@post("/instances", name="instances-upload", status_code=200)
async def upload_instances(request: Request, services: Services) -> Response[bytes]:
    origin = Origin(kind="RestApi", remote_ip=request.client.host if request.client else "")
    answers: list[dict[str, str]] = []
    declared_size = parse_integer(request.headers.get("content-length", "")) or 0
    with services.ingest.pending.admit(declared_size):
        files = await _uploaded_files(request)
        for data in files:
            answer = file_answer(await services.ingest.ingest_upload(data, origin))
            if len(files) == 1:
                return json_response(answer)
            if isinstance(answer, list):
                answers.extend(answer)
            else:
                answers.append(answer)
    return json_response(answers)


@get("/instances/{resource_id:str}/file", name="instances-file")
async def instance_file(resource_id: str, request: Request, services: Services) -> Response[bytes]:
    rid = parse_id(resource_id)
    blob = None if rid is None else services.resources.instance_blob(rid)
    if blob is None:
        raise unknown_resource()
    headers = {"Content-Type": "application/dicom", "Content-Disposition": f'filename="{blob.uuid}.dcm"'}
    return await content_response(services.storage, blob, headers, takes_deflate(request, services))
