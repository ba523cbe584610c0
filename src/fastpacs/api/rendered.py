"""/instances/{id}/rendered, /instances/{id}/frames/{i}/rendered and /series/{id}/numpy.

``rendered`` takes ``window-center``, ``window-width``, ``width``,
``height``, ``smooth`` and ``quality``; the format follows ``Accept`` as
for the other images. As in Orthanc, a malformed number is an empty 404
and a malformed ``smooth`` an empty 415.
"""

import math
import re
from collections.abc import Mapping

from litestar import Request, Response, get

from fastpacs.api.images import boolean_argument, frame_index, jpeg_quality, negotiate
from fastpacs.api.responses import unknown_resource
from fastpacs.dicom.ids import parse_id
from fastpacs.errors import BareHttpError
from fastpacs.imaging.formats import DEFAULT_JPEG_QUALITY, ImageFormat, Rendering
from fastpacs.services.registry import Services
from fastpacs.services.request_fields import boolean_text

_SIZE = re.compile(r"[0-9]{1,5}")
UNSUPPORTED_MEDIA_TYPE = 415


def _window_value(arguments: Mapping[str, str], name: str) -> float | None:
    text = arguments.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BareHttpError(404) from None
    if not math.isfinite(value):
        raise BareHttpError(404)
    return value


def _size(arguments: Mapping[str, str], name: str) -> int:
    text = arguments.get(name)
    if text is None:
        return 0
    if not _SIZE.fullmatch(text):
        raise BareHttpError(404)
    return int(text)


def rendering_of(arguments: Mapping[str, str]) -> Rendering:
    smooth = boolean_text(arguments.get("smooth", "false"))
    if smooth is None:
        raise BareHttpError(UNSUPPORTED_MEDIA_TYPE)
    return Rendering(
        window_center=_window_value(arguments, "window-center"),
        window_width=_window_value(arguments, "window-width"),
        width=_size(arguments, "width"),
        height=_size(arguments, "height"),
        smooth=smooth,
    )


def rendered_request(accept: str | None, arguments: Mapping[str, str]) -> tuple[ImageFormat, int, Rendering]:
    """The format, JPEG quality and rendering a ``rendered`` request asks for, by its ``Accept`` header
    and query ``arguments``; the empty 404 or 415 of a malformed or unacceptable request."""
    image_format = negotiate(accept)
    return image_format, jpeg_quality(arguments), rendering_of(arguments)


async def render_windowed(
    services: Services,
    resource_id: str,
    frame: int,
    rendering: Rendering,
    *,
    image_format: ImageFormat,
    quality: int,
) -> bytes:
    """A frame as ``rendered``: the route's work, shared with the fast lane (api/image_lane.py); an
    unknown instance is an empty 404."""
    rid = parse_id(resource_id)
    if rid is None:
        raise BareHttpError(404)
    return await services.rendered.rendered(rid, frame, rendering, image_format, quality)


async def _rendered(request: Request, services: Services, resource_id: str, frame: int) -> Response[bytes]:
    try:
        image_format, quality, rendering = rendered_request(
            request.headers.get("accept"), request.query_params
        )
    except BareHttpError:
        # As Orthanc: an unknown instance is its 404 and pixels it cannot decode its 415 first.
        await render_windowed(
            services,
            resource_id,
            frame,
            Rendering(),
            image_format=ImageFormat.PNG,
            quality=DEFAULT_JPEG_QUALITY,
        )
        raise
    body = await render_windowed(
        services, resource_id, frame, rendering, image_format=image_format, quality=quality
    )
    return Response(body, media_type=image_format.value)


@get("/instances/{resource_id:str}/rendered", name="instances-rendered")
async def instance_rendered(request: Request, resource_id: str, services: Services) -> Response[bytes]:
    return await _rendered(request, services, resource_id, 0)


@get("/instances/{resource_id:str}/frames/{index:str}/rendered", name="instances-frame-rendered")
async def frame_rendered(
    request: Request, resource_id: str, index: str, services: Services
) -> Response[bytes]:
    return await _rendered(request, services, resource_id, frame_index(index))


@get("/series/{resource_id:str}/numpy", name="series-numpy")
async def series_numpy(request: Request, resource_id: str, services: Services) -> Response[bytes]:
    rid = parse_id(resource_id)
    if rid is None:
        raise unknown_resource()
    rescale = boolean_argument(request, "rescale", True)
    compress = boolean_argument(request, "compress", False)
    body = await services.rendered.series_numpy(rid, rescale, compress)
    return Response(body, media_type="application/octet-stream")


RENDERED_HANDLERS = [instance_rendered, frame_rendered, series_numpy]
