"""/peers: other Orthanc-compatible servers, their settings, and storing to them over HTTP."""

from litestar import Request, Response, delete, get, post, put

from fastpacs.api.responses import empty_ok, flag, json_response
from fastpacs.errors import BareHttpError
from fastpacs.services.peers import PEER_OPERATIONS, parse_peer, parse_peer_store_request, peer_json
from fastpacs.services.registry import Services

PROXIED_MEDIA_TYPE = "application/json"
"""What Orthanc labels a peer's /system answer it passes on."""


@get("/peers", name="peers")
async def list_peers(request: Request, services: Services) -> Response[bytes]:
    registry = services.peers.registry
    if flag(request, "expand"):
        return json_response({name: peer_json(peer) for name, peer in registry.all().items()})
    return json_response(registry.names())


@get("/peers/{name:str}", name="peer")
async def peer_operations(name: str, services: Services) -> Response[bytes]:
    if services.peers.registry.get(name) is None:
        raise BareHttpError(404)
    return json_response(list(PEER_OPERATIONS))


@get("/peers/{name:str}/configuration", name="peer-configuration")
async def peer_configuration(name: str, services: Services) -> Response[bytes]:
    return json_response(peer_json(services.peers.registry.require(name)))


@put("/peers/{name:str}", name="peer-put", status_code=200)
async def put_peer(name: str, request: Request, services: Services) -> Response[bytes]:
    await services.peers.registry.put(name, parse_peer(await request.body()))
    return empty_ok()


@delete("/peers/{name:str}", name="peer-delete", status_code=200)
async def delete_peer(name: str, services: Services) -> Response[bytes]:
    await services.peers.registry.delete(name)
    return empty_ok()


@post("/peers/{name:str}/store", name="peer-store", status_code=200)
async def store(name: str, request: Request, services: Services) -> Response[bytes]:
    store_request = parse_peer_store_request(await request.body())
    return json_response(await services.peers.store(name, store_request))


@post("/peers/{name:str}/store-straight", name="peer-store-straight", status_code=200)
async def store_straight(name: str, request: Request, services: Services) -> Response[bytes]:
    return json_response(await services.peers.store_straight(name, await request.body()))


@get("/peers/{name:str}/system", name="peer-system")
async def peer_system(name: str, services: Services) -> Response[bytes]:
    return Response(await services.peers.system(name), media_type=PROXIED_MEDIA_TYPE)


PEER_HANDLERS = [
    list_peers,
    peer_operations,
    peer_configuration,
    put_peer,
    delete_peer,
    store,
    store_straight,
    peer_system,
]
