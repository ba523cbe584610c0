"""/modalities: the remote DICOM modalities, C-ECHO and C-STORE to them; the DICOM server's settings.

Also ``/tools/accepted-transfer-syntaxes`` and ``/tools/unknown-sop-class-accepted``,
which tune the DICOM server at run time as in Orthanc 1.10.1.
"""

from litestar import Request, Response, delete, get, post, put

from fastpacs.api.responses import empty_ok, flag, json_response, text_response
from fastpacs.errors import BareHttpError
from fastpacs.net.transfer_syntaxes import matching_transfer_syntaxes, parse_patterns
from fastpacs.services.exports import parse_store_request
from fastpacs.services.modalities import modality_json, parse_echo_timeout, parse_modality
from fastpacs.services.registry import Services
from fastpacs.services.request_fields import boolean_body
from fastpacs.services.storage_commitment import wants_storage_commitment

MODALITY_OPERATIONS = (
    # What GET /modalities/{name} lists (Orthanc 1.10.1's sub-routes, implemented or not).
    "configuration",
    "echo",
    "find",
    "find-instance",
    "find-patient",
    "find-series",
    "find-study",
    "find-worklist",
    "move",
    "query",
    "storage-commitment",
    "store",
    "store-straight",
)
EMPTY_JSON_OBJECT = b"{}"


@get("/modalities", name="modalities")
async def list_modalities(request: Request, services: Services) -> Response[bytes]:
    registry = services.modalities
    if flag(request, "expand"):
        return json_response({name: modality_json(value) for name, value in registry.all().items()})
    return json_response(registry.names())


@get("/modalities/{name:str}", name="modality")
async def modality_operations(name: str, services: Services) -> Response[bytes]:
    if services.modalities.get(name) is None:
        raise BareHttpError(404)
    return json_response(list(MODALITY_OPERATIONS))


@get("/modalities/{name:str}/configuration", name="modality-configuration")
async def modality_configuration(name: str, services: Services) -> Response[bytes]:
    return json_response(modality_json(services.modalities.require(name)))


@put("/modalities/{name:str}", name="modality-put", status_code=200)
async def put_modality(name: str, request: Request, services: Services) -> Response[bytes]:
    await services.modalities.put(name, parse_modality(await request.body()))
    return empty_ok()


@delete("/modalities/{name:str}", name="modality-delete", status_code=200)
async def delete_modality(name: str, services: Services) -> Response[bytes]:
    await services.modalities.delete(name)
    return empty_ok()


@post("/modalities/{name:str}/echo", name="modality-echo", status_code=200)
async def echo(name: str, request: Request, services: Services) -> Response[bytes]:
    timeout = parse_echo_timeout(await request.body())
    await services.modalities.echo(name, timeout)
    return Response(EMPTY_JSON_OBJECT, media_type="application/json")


@post("/tools/dicom-echo", name="tools-dicom-echo", status_code=200)
async def echo_unregistered(request: Request, services: Services) -> Response[bytes]:
    """C-ECHO a node described in the body as for PUT /modalities/{name} (its Timeout included)."""
    body = await request.body()
    timeout = parse_echo_timeout(body, body_required=True)  # first: its error names a bad body as Orthanc
    await services.modalities.echo_modality(parse_modality(body), timeout)
    return Response(EMPTY_JSON_OBJECT, media_type="application/json")


@post("/modalities/{name:str}/store", name="modality-store", status_code=200)
async def store(name: str, request: Request, services: Services) -> Response[bytes]:
    body = await request.body()
    store_request = parse_store_request(body)
    store_request.storage_commitment = commitment = wants_storage_commitment(body)
    answer = await services.modality_exports.store(name, store_request)
    if commitment and store_request.synchronous:  # an asynchronous store's job asks for it itself
        answer["StorageCommitmentTransactionUID"] = await services.storage_commitment.request_resources(
            name, store_request.resources, store_request.timeout
        )
    return json_response(answer)


@post("/modalities/{name:str}/store-straight", name="modality-store-straight", status_code=200)
async def store_straight(name: str, request: Request, services: Services) -> Response[bytes]:
    return json_response(await services.modality_exports.store_straight(name, await request.body()))


@get("/tools/accepted-transfer-syntaxes", name="accepted-transfer-syntaxes")
async def accepted_transfer_syntaxes(services: Services) -> Response[bytes]:
    return json_response(services.dicom_server.accepted_transfer_syntaxes)


@put("/tools/accepted-transfer-syntaxes", name="accepted-transfer-syntaxes-put", status_code=200)
async def set_accepted_transfer_syntaxes(request: Request, services: Services) -> Response[bytes]:
    server = services.dicom_server
    server.set_accepted_transfer_syntaxes(matching_transfer_syntaxes(parse_patterns(await request.body())))
    return json_response(server.accepted_transfer_syntaxes)


@get("/tools/unknown-sop-class-accepted", name="unknown-sop-class-accepted")
async def unknown_sop_class_accepted(services: Services) -> Response[bytes]:
    return text_response("1" if services.dicom_server.unknown_sop_class_accepted else "0")


@put("/tools/unknown-sop-class-accepted", name="unknown-sop-class-accepted-put", status_code=200)
async def set_unknown_sop_class_accepted(request: Request, services: Services) -> Response[bytes]:
    services.dicom_server.set_unknown_sop_class_accepted(boolean_body(await request.body()))
    return empty_ok()


MODALITY_HANDLERS = [
    list_modalities,
    modality_operations,
    modality_configuration,
    put_modality,
    delete_modality,
    echo,
    echo_unregistered,
    store,
    store_straight,
    accepted_transfer_syntaxes,
    set_accepted_transfer_syntaxes,
    unknown_sop_class_accepted,
    set_unknown_sop_class_accepted,
]
