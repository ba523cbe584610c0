"""Storage commitment as the modality (SCU): request one, read its report, remove what was committed.

The logic is in :mod:`fastpacs.services.storage_commitment`.
"""

from litestar import Request, Response, get, post

from fastpacs.api.responses import empty_object, json_response
from fastpacs.services.registry import Services
from fastpacs.services.storage_commitment import parse_commitment_request


@post("/modalities/{name:str}/storage-commitment", name="modality-storage-commitment", status_code=200)
async def request_commitment(name: str, request: Request, services: Services) -> Response[bytes]:
    commitment = parse_commitment_request(await request.body())
    return json_response(await services.storage_commitment.request(name, commitment))


@get("/storage-commitment/{transaction_uid:str}", name="storage-commitment-report")
async def commitment_report(transaction_uid: str, services: Services) -> Response[bytes]:
    return json_response(services.storage_commitment.report(transaction_uid))


@post("/storage-commitment/{transaction_uid:str}/remove", name="storage-commitment-remove", status_code=200)
async def remove_committed(transaction_uid: str, services: Services) -> Response[bytes]:
    await services.storage_commitment.remove(transaction_uid)
    return empty_object()


STORAGE_COMMITMENT_HANDLERS = [request_commitment, commitment_report, remove_committed]
