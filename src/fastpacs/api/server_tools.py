"""/tools: the list of tools, clocks, UIDs, conformance statement, log levels, reset and shutdown."""

import time
import uuid
from functools import cache

from litestar import Litestar, Request, Response, get, post, put
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import empty_object, empty_ok, json_response, text_response
from fastpacs.dicom.modification import new_uid
from fastpacs.errors import BareHttpError
from fastpacs.services.conformance import conformance_statement
from fastpacs.services.log_levels import CATEGORIES
from fastpacs.services.registry import Services


@cache
def _tools(app: Litestar) -> list[str]:
    """The names below /tools that this server answers (Orthanc lists its own the same way)."""
    names = {route.path.split("/")[2] for route in app.routes if route.path.startswith("/tools/")}
    return sorted(names)


@get("/tools", name="tools")
async def tools(request: Request) -> Response[bytes]:
    return json_response(_tools(request.app))


@get("/tools/now", name="tools-now")
async def now() -> Response[bytes]:
    """The current time in UTC, as Orthanc writes dates (``20261127T191909``)."""
    return text_response(time.strftime("%Y%m%dT%H%M%S", time.gmtime()))


@get("/tools/now-local", name="tools-now-local")
async def now_local() -> Response[bytes]:
    return text_response(time.strftime("%Y%m%dT%H%M%S", time.localtime()))


@get("/tools/generate-uid", name="tools-generate-uid")
async def generate_uid(request: Request) -> Response[bytes]:
    """A new identifier: a UUID for a patient, a DICOM UID for a study, series or instance."""
    level = request.query_params.get("level")
    if level == "patient":
        return text_response(str(uuid.uuid4()))
    if level in ("study", "series", "instance"):
        return text_response(new_uid())
    raise BareHttpError(404)


@get("/tools/dicom-conformance", name="tools-dicom-conformance")
async def dicom_conformance() -> Response[bytes]:
    return text_response(conformance_statement())


def _log_level_handlers(category: str | None) -> list[HTTPRouteHandler]:
    path = "/tools/log-level" if category is None else f"/tools/log-level-{category}"
    name = path.removeprefix("/tools/")

    @get(path, name=f"tools-{name}")
    async def get_level(services: Services) -> Response[bytes]:
        return text_response(services.log_levels.get(category))

    @put(path, name=f"tools-{name}-set", status_code=200)
    async def set_level(request: Request, services: Services) -> Response[bytes]:
        verbosity = (await request.body()).decode("utf-8", errors="replace").strip()
        services.log_levels.set(verbosity, category)
        return empty_ok()

    return [get_level, set_level]


@post("/tools/reset", name="tools-reset", status_code=200)
async def reset(services: Services) -> Response[bytes]:
    services.lifecycle.reset()
    return empty_object()


@post("/tools/shutdown", name="tools-shutdown", status_code=200)
async def shutdown(services: Services) -> Response[bytes]:
    services.lifecycle.shutdown()
    return empty_object()


SERVER_TOOL_HANDLERS = [
    tools,
    now,
    now_local,
    generate_uid,
    dicom_conformance,
    *(handler for category in (None, *CATEGORIES) for handler in _log_level_handlers(category)),
    reset,
    shutdown,
]
