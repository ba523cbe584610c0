"""The fast lane's images: renderings of a frame answered in front of the router.

``preview``, ``image-uint8``, ``image-uint16``, ``image-int16`` and
``rendered``, of an instance (its first frame) or of one of its frames
(``/instances/{id}/frames/{n}/...``), are what viewers ask for most after
the tags. Rendering costs the server process little (the worker pool does
the work), so the framework's routing, dependency injection and response
objects were about half of the server's CPU per uncached render. The lane
calls the routes' own functions (:func:`image_request`,
:func:`rendered_request`: format negotiation and arguments;
:func:`render_image`, :func:`render_windowed`: the rendered cache) with the
``Accept`` header and query arguments read straight from the ASGI scope, and
answers with the headers the route's ``Response`` has (type and length).

Only the plain cases are answered here: query arguments written without
escapes, each given once, and at most one ``Accept`` header. Anything else,
and every failure (a malformed argument, an unknown instance, a frame that
cannot be rendered), goes on to the router unchanged, which keeps a single
implementation of every error answer; a render that failed is then tried
once more by the route.
"""

import re
from collections.abc import Mapping

from litestar.types import Scope

from fastpacs.api.images import frame_index, image_request, render_image
from fastpacs.api.rendered import render_windowed, rendered_request
from fastpacs.imaging.formats import ImageFormat, Operation
from fastpacs.services.registry import Services

Answer = tuple[list[tuple[bytes, bytes]], bytes, str]
"""Headers, body and route name, as :class:`fastpacs.api.fast_lane.FastLane` sends them."""

RENDERED = "rendered"
IMAGE_PATH_ENDINGS = tuple(f"/{name}" for name in (*Operation, RENDERED))
"""The endings of the paths the lane may answer (a cheap test before :func:`image_answer`)."""

_INSTANCE_ROUTES = {name: f"/instances/{{resource_id}}/{name}" for name in (*Operation, RENDERED)}
_FRAME_ROUTES = {
    **{operation.value: "/instances/{resource_id}/frames/{index}/{operation}" for operation in Operation},
    RENDERED: "/instances/{resource_id}/frames/{index}/rendered",
}
"""The route names the router reports (``scope["path_template"]``), for the metrics and the log."""
_OPERATIONS = {operation.value: operation for operation in Operation}
_CONTENT_TYPES = {format_: (b"content-type", format_.value.encode()) for format_ in ImageFormat}
_PLAIN_ARGUMENT = re.compile(rb"([A-Za-z0-9._-]+)=([A-Za-z0-9._-]+)")
"""``name=value`` with nothing a query parser decodes (``%``, ``+``) or splits on (``;``)."""


async def image_answer(services: Services | None, scope: Scope) -> Answer | None:
    """The answer to a GET of a rendered frame, or ``None`` to hand the request to the router."""
    if services is None:
        return None
    parts = scope["path"].split("/")
    if len(parts) == 4 and parts[1] == "instances" and parts[3] in _INSTANCE_ROUTES:
        name, frame_text, route = parts[3], None, _INSTANCE_ROUTES[parts[3]]
    elif len(parts) == 6 and parts[1] == "instances" and parts[3] == "frames" and parts[5] in _FRAME_ROUTES:
        name, frame_text, route = parts[5], parts[4], _FRAME_ROUTES[parts[5]]
    else:
        return None
    arguments = _plain_arguments(scope["query_string"])
    accepts = [value for header, value in scope["headers"] if header == b"accept"]
    if arguments is None or len(accepts) > 1:
        return None
    accept = accepts[0].decode("latin-1") if accepts else None
    try:
        frame = 0 if frame_text is None else frame_index(frame_text)
        if name == RENDERED:
            image_format, quality, rendering = rendered_request(accept, arguments)
            body = await render_windowed(
                services, parts[2], frame, rendering, image_format=image_format, quality=quality
            )
        else:
            operation = _OPERATIONS[name]
            image_format, quality = image_request(accept, operation, arguments)
            body = await render_image(
                services, parts[2], frame, operation, image_format=image_format, quality=quality
            )
    except Exception:  # noqa: BLE001 - every failure is the router's to answer, as the route does
        return None
    return [_CONTENT_TYPES[image_format], (b"content-length", str(len(body)).encode())], body, route


def _plain_arguments(query: bytes) -> Mapping[str, str] | None:
    """The query arguments, when each is a plain ``name=value`` given once; else ``None``."""
    arguments: dict[str, str] = {}
    if not query:
        return arguments
    for item in query.split(b"&"):
        match = _PLAIN_ARGUMENT.fullmatch(item)
        if match is None:
            return None
        name = match[1].decode()
        if name in arguments:
            return None
        arguments[name] = match[2].decode()
    return arguments
