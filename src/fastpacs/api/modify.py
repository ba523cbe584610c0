"""/modify and /anonymize at every level, /studies/{id}/split and /studies/{id}/merge,
/tools/bulk-modify and /tools/bulk-anonymize."""

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import json_response, unknown_resource
from fastpacs.dicom.ids import Level, RawId, parse_id
from fastpacs.services.ingest import Origin
from fastpacs.services.registry import Services

DICOM_MEDIA_TYPE = "application/dicom"


def _known_id(public_id: str) -> RawId:
    rid = parse_id(public_id)
    if rid is None:
        raise unknown_resource()
    return rid


def _origin(request: Request) -> Origin:
    return Origin(kind="RestApi", remote_ip=request.client.host if request.client else "")


@post("/instances/{instance_id:str}/modify", name="instances-modify", status_code=200)
async def modify_instance(instance_id: str, request: Request, services: Services) -> Response[bytes]:
    data = await services.modify.modify_instance(_known_id(instance_id), await request.body())
    return Response(data, media_type=DICOM_MEDIA_TYPE)


@post("/instances/{instance_id:str}/anonymize", name="instances-anonymize", status_code=200)
async def anonymize_instance(instance_id: str, request: Request, services: Services) -> Response[bytes]:
    data = await services.modify.anonymize_instance(_known_id(instance_id), await request.body())
    return Response(data, media_type=DICOM_MEDIA_TYPE)


def _resource_handlers(level: Level) -> list[HTTPRouteHandler]:
    @post(f"/{level.plural}/{{resource_id:str}}/modify", name=f"{level.plural}-modify", status_code=200)
    async def modify(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        body = await request.body()
        answer = await services.modify.modify_resource(level, resource_id, body, _origin(request))
        return json_response(answer)

    @post(f"/{level.plural}/{{resource_id:str}}/anonymize", name=f"{level.plural}-anonymize", status_code=200)
    async def anonymize(resource_id: str, request: Request, services: Services) -> Response[bytes]:
        body = await request.body()
        answer = await services.modify.anonymize_resource(level, resource_id, body, _origin(request))
        return json_response(answer)

    return [modify, anonymize]


@post("/studies/{study_id:str}/split", name="studies-split", status_code=200)
async def split_study(study_id: str, request: Request, services: Services) -> Response[bytes]:
    answer = await services.modify.split(study_id, await request.body(), _origin(request))
    return json_response(answer)


@post("/studies/{study_id:str}/merge", name="studies-merge", status_code=200)
async def merge_study(study_id: str, request: Request, services: Services) -> Response[bytes]:
    answer = await services.modify.merge(study_id, await request.body(), _origin(request))
    return json_response(answer)


@post("/tools/bulk-modify", name="tools-bulk-modify", status_code=200)
async def bulk_modify(request: Request, services: Services) -> Response[bytes]:
    return json_response(await services.modify.bulk_modify(await request.body(), _origin(request)))


@post("/tools/bulk-anonymize", name="tools-bulk-anonymize", status_code=200)
async def bulk_anonymize(request: Request, services: Services) -> Response[bytes]:
    return json_response(await services.modify.bulk_anonymize(await request.body(), _origin(request)))


MODIFY_HANDLERS = [
    modify_instance,
    anonymize_instance,
    *(
        handler
        for level in (Level.PATIENT, Level.STUDY, Level.SERIES)
        for handler in _resource_handlers(level)
    ),
    split_study,
    merge_study,
    bulk_modify,
    bulk_anonymize,
]
