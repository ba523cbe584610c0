"""/modalities/{name}/query and /queries: C-FIND to modalities, their answers, and C-MOVE of them.

Also /modalities/{name}/move, a C-MOVE of resources named in the request, and Orthanc's
deprecated C-FIND shortcuts /modalities/{name}/find-* and /find (services/modality_finds.py).
"""

from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import empty_ok, flag, json_response, parse_integer, text_response
from fastpacs.dicom.ids import Level
from fastpacs.dicom.tags import TagJson, shorten, simplify
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.services.modality_finds import find_hierarchy, find_keys, find_level, find_worklist
from fastpacs.services.queries import CHILD_QUERIES, RemoteQuery, parse_move_request, parse_query_request
from fastpacs.services.registry import Services

QUERY_OPERATIONS = ["answers", "level", "modality", "query", "retrieve"]


def _form(request: Request, tags: TagJson) -> TagJson:
    """``?simplify`` or ``?short``, as for an instance's tags."""
    if flag(request, "simplify"):
        return simplify(tags)
    return shorten(tags) if flag(request, "short") else tags


def _index(text: str) -> int:
    index = parse_integer(text)
    if index is None:
        raise OrthancError(ErrorCode.BAD_PARAMETER_TYPE, "Syntax error in some user-supplied data")
    return index


def _created(query: RemoteQuery) -> Response[bytes]:
    return json_response({"ID": query.id, "Path": f"/queries/{query.id}"})


@post("/modalities/{name:str}/query", name="modality-query", status_code=200)
async def query_modality(name: str, request: Request, services: Services) -> Response[bytes]:
    query_request = parse_query_request(await request.body())
    return _created(await services.queries.query(name, query_request))


@post("/modalities/{name:str}/move", name="modality-move", status_code=200)
async def move_from_modality(name: str, request: Request, services: Services) -> Response[bytes]:
    """C-MOVE resources named by their identifiers from the modality (synchronously, as Orthanc 1.10.1)."""
    await services.queries.move(name, parse_move_request(await request.body()))
    return Response(b"{}", media_type="application/json")


FIND_LEVELS = {
    "find-patient": Level.PATIENT,
    "find-study": Level.STUDY,
    "find-series": Level.SERIES,
    "find-instance": Level.INSTANCE,
}


def _find_level_handler(shortcut: str, level: Level) -> HTTPRouteHandler:
    """The route of one of ``find-patient``, ``find-study``, ``find-series``, ``find-instance``."""

    async def find_in_modality(name: str, request: Request, services: Services) -> Response[bytes]:
        keys = find_keys(await request.body(), level)
        return json_response(await find_level(services.queries, name, level, keys))

    route = post(f"/modalities/{{name:str}}/{shortcut}", name=f"modality-{shortcut}", status_code=200)
    return route(find_in_modality)


@post("/modalities/{name:str}/find", name="modality-find", status_code=200)
async def find_hierarchy_in_modality(name: str, request: Request, services: Services) -> Response[bytes]:
    """The patients matching the body, with their studies and series."""
    return json_response(await find_hierarchy(services.queries, name, await request.body()))


@post("/modalities/{name:str}/find-worklist", name="modality-find-worklist", status_code=200)
async def find_worklist_in_modality(name: str, request: Request, services: Services) -> Response[bytes]:
    """The worklist items of the modality (a RIS) matching the body."""
    return json_response(await find_worklist(services.queries, name, await request.body()))


@get("/queries", name="queries")
async def list_queries(services: Services) -> Response[bytes]:
    return json_response(services.queries.ids())


@get("/queries/{query_id:str}", name="query")
async def query_operations(query_id: str, services: Services) -> Response[bytes]:
    services.queries.get(query_id)
    return json_response(QUERY_OPERATIONS)


@delete("/queries/{query_id:str}", name="query-delete", status_code=200)
async def delete_query(query_id: str, services: Services) -> Response[bytes]:
    services.queries.delete(query_id)
    return empty_ok()


@get("/queries/{query_id:str}/level", name="query-level")
async def query_level(query_id: str, services: Services) -> Response[bytes]:
    return text_response(services.queries.get(query_id).level.type_name)


@get("/queries/{query_id:str}/modality", name="query-modality")
async def query_modality_name(query_id: str, services: Services) -> Response[bytes]:
    return text_response(services.queries.get(query_id).modality)


@get("/queries/{query_id:str}/query", name="query-query")
async def query_keys(query_id: str, request: Request, services: Services) -> Response[bytes]:
    return json_response(_form(request, services.queries.get(query_id).query_json()))


@get("/queries/{query_id:str}/answers", name="query-answers")
async def answers(query_id: str, request: Request, services: Services) -> Response[bytes]:
    query = services.queries.get(query_id)
    if flag(request, "expand"):
        return json_response([_form(request, answer) for answer in query.answers])
    return json_response([str(index) for index in range(len(query.answers))])


@get("/queries/{query_id:str}/answers/{index:str}", name="query-answer")
async def answer_operations(query_id: str, index: str, services: Services) -> Response[bytes]:
    query = services.queries.get(query_id)
    query.answer(_index(index))
    return json_response(["content", "retrieve", *CHILD_QUERIES[query.level]])


@get("/queries/{query_id:str}/answers/{index:str}/content", name="query-answer-content")
async def answer_content(query_id: str, index: str, request: Request, services: Services) -> Response[bytes]:
    return json_response(_form(request, services.queries.get(query_id).answer(_index(index))))


@post("/queries/{query_id:str}/answers/{index:str}/{child:str}", name="query-answer-child", status_code=200)
async def answer_child(
    query_id: str, index: str, child: str, request: Request, services: Services
) -> Response[bytes]:
    body = await request.body()
    if child == "retrieve":
        return json_response(await services.queries.retrieve(query_id, _index(index), body))
    return _created(await services.queries.child_query(query_id, _index(index), child, body))


@post("/queries/{query_id:str}/retrieve", name="query-retrieve", status_code=200)
async def retrieve_all(query_id: str, request: Request, services: Services) -> Response[bytes]:
    return json_response(await services.queries.retrieve(query_id, None, await request.body()))


QUERY_HANDLERS = [
    query_modality,
    move_from_modality,
    *(_find_level_handler(shortcut, level) for shortcut, level in FIND_LEVELS.items()),
    find_hierarchy_in_modality,
    find_worklist_in_modality,
    list_queries,
    query_operations,
    delete_query,
    query_level,
    query_modality_name,
    query_keys,
    answers,
    answer_operations,
    answer_content,
    answer_child,
    retrieve_all,
]
