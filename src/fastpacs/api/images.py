"""Frames and images of an instance: /frames, /preview, /image-*, /matlab, /numpy, /frames/{i}/...

Instance-level routes are frame 0 (``/numpy``: every frame). The image
format follows the ``Accept`` header as Orthanc negotiates it: the most
specific media range wins (exact type over ``image/*`` over ``*/*``), then
the highest ``q``, then the first listed; wildcards mean PNG. Nothing
acceptable is an empty 404.
"""

import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from fastpacs.api.responses import json_response, unknown_resource
from fastpacs.dicom.ids import parse_id
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.imaging.formats import DEFAULT_JPEG_QUALITY, ImageFormat, Operation
from fastpacs.services.registry import Services
from fastpacs.services.request_fields import boolean_text

FRAME_OPERATIONS = [
    "image-int16",
    "image-uint16",
    "image-uint8",
    "matlab",
    "numpy",
    "preview",
    "raw",
    "raw.gz",
    "rendered",
]
"""What ``/instances/{id}/frames/{i}`` lists (Orthanc lists it for any instance and index)."""

OFFERED_FORMATS = (ImageFormat.PNG, ImageFormat.PAM, ImageFormat.JPEG)
"""In Orthanc's order: wildcards mean PNG."""
_EIGHT_BIT_OPERATIONS = (Operation.PREVIEW, Operation.UINT8)
"""The only ones JPEG can carry; JPEG negotiated for the others is an empty 404."""
_WILDCARD_LEVELS = {"*/*": 0, "image/*": 1}
_EXACT_LEVEL = 2
_FRAME_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
_LARGEST_FRAME_INDEX = 2**32 - 1
_QUALITY = re.compile(r"[0-9]{1,3}")
UNSUPPORTED_MEDIA_TYPE = 415


def negotiate(accept: str | None, offered: tuple[ImageFormat, ...] = OFFERED_FORMATS) -> ImageFormat:
    """The format to answer in, by Orthanc's rules; an empty 404 if none is acceptable."""
    if accept is None:
        return offered[0]
    best: ImageFormat | None = None
    best_rank = (-1, 0.0)
    for item in accept.split(","):
        media, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    raise BareHttpError(UNSUPPORTED_MEDIA_TYPE) from None
        if media in _WILDCARD_LEVELS:
            level, candidate = _WILDCARD_LEVELS[media], offered[0]
        else:
            level = _EXACT_LEVEL
            candidate = next((option for option in offered if option.value == media), None)
        if candidate is not None and (level, quality) > best_rank:
            best, best_rank = candidate, (level, quality)
    if best is None:
        raise BareHttpError(404)
    return best


def jpeg_quality(arguments: Mapping[str, str]) -> int:
    """``?quality=1..100`` (90 by default); anything else is an empty 415, whatever the format."""
    text = arguments.get("quality")
    if text is None:
        return DEFAULT_JPEG_QUALITY
    if not _QUALITY.fullmatch(text) or not 1 <= int(text) <= 100:
        raise BareHttpError(UNSUPPORTED_MEDIA_TYPE)
    return int(text)


def boolean_argument(request: Request, name: str, default: bool) -> bool:
    text = request.query_params.get(name)
    if text is None:
        return default
    value = boolean_text(text)
    if value is None:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f'Expected a Boolean for GET argument "{name}", found: {text}'
        )
    return value


def frame_index(text: str) -> int:
    """A frame number as Orthanc parses it (plain decimal, 32-bit); anything else is an empty 404."""
    if not _FRAME_INDEX.fullmatch(text) or int(text) > _LARGEST_FRAME_INDEX:
        raise BareHttpError(404)
    return int(text)


def image_request(
    accept: str | None, operation: Operation, arguments: Mapping[str, str]
) -> tuple[ImageFormat, int]:
    """The format and JPEG quality a ``preview`` or ``image-*`` request asks for, by its ``Accept``
    header and query ``arguments``; the empty 404 or 415 of a request for nothing it can have."""
    image_format = negotiate(accept)
    if image_format == ImageFormat.JPEG and operation not in _EIGHT_BIT_OPERATIONS:
        raise BareHttpError(404)
    return image_format, jpeg_quality(arguments)


async def render_image(
    services: Services,
    resource_id: str,
    frame: int,
    operation: Operation,
    *,
    image_format: ImageFormat,
    quality: int,
) -> bytes:
    """A frame as ``preview`` or ``image-*``: the route's work, shared with the fast lane
    (api/image_lane.py); an unknown instance is an empty 404."""
    rid = parse_id(resource_id)
    if rid is None:
        raise BareHttpError(404)
    return await services.images.image(rid, frame, operation, image_format, quality)


async def _image(request: Request, services: Services, resource_id: str, frame: int, operation: Operation):
    try:
        image_format, quality = image_request(request.headers.get("accept"), operation, request.query_params)
    except BareHttpError:
        # Orthanc reads the frame before the request's Accept and arguments: an unknown instance is its
        # 404 and pixels it cannot decode its 415, whatever they ask.
        await render_image(
            services,
            resource_id,
            frame,
            Operation.PREVIEW,
            image_format=ImageFormat.PNG,
            quality=DEFAULT_JPEG_QUALITY,
        )
        raise
    body = await render_image(
        services, resource_id, frame, operation, image_format=image_format, quality=quality
    )
    return Response(body, media_type=image_format.value)


async def _matlab(request: Request, services: Services, resource_id: str, frame: int) -> Response[bytes]:
    body = await services.images.matlab(_instance_id(resource_id), frame)
    return Response(body, headers={"Content-Type": "text/plain"})  # no charset, as Orthanc


async def _numpy(
    request: Request, services: Services, resource_id: str, frame: int | None
) -> Response[bytes]:
    rescale = boolean_argument(request, "rescale", True)
    compress = boolean_argument(request, "compress", False)
    body = await services.images.numpy(_instance_id(resource_id), frame, rescale, compress)
    return Response(body, media_type="application/octet-stream")


async def _raw(request: Request, services: Services, resource_id: str, frame: int, compress: bool):
    body, media_type = await services.images.raw(_instance_id(resource_id), frame, compress)
    return Response(body, media_type=media_type)


def _instance_id(resource_id: str) -> bytes:
    """The ID of a route that answers Orthanc's JSON 404 for an unknown instance."""
    rid = parse_id(resource_id)
    if rid is None:
        raise unknown_resource()
    return rid


Producer = Callable[..., Coroutine[Any, Any, Response[bytes]]]


def _frame_producers() -> dict[str, Producer]:
    producers: dict[str, Producer] = {
        operation.value: (
            lambda request, services, resource_id, frame, operation=operation: _image(
                request, services, resource_id, frame, operation
            )
        )
        for operation in Operation
    }
    producers["matlab"] = _matlab
    producers["numpy"] = _numpy
    producers["raw"] = lambda request, services, resource_id, frame: _raw(
        request, services, resource_id, frame, False
    )
    producers["raw.gz"] = lambda request, services, resource_id, frame: _raw(
        request, services, resource_id, frame, True
    )
    return producers


_FRAME_PRODUCERS = _frame_producers()


@get("/instances/{resource_id:str}/frames", name="instances-frames")
async def instance_frames(resource_id: str, services: Services) -> Response[bytes]:
    count = services.images.number_of_frames(_instance_id(resource_id))
    return json_response(list(range(count)))


@get("/instances/{resource_id:str}/frames/{index:str}", name="instances-frame-operations")
async def frame_operations(resource_id: str, index: str) -> Response[bytes]:
    return json_response(FRAME_OPERATIONS)


@get("/instances/{resource_id:str}/frames/{index:str}/{operation:str}", name="instances-frame")
async def frame_content(
    request: Request, resource_id: str, index: str, operation: str, services: Services
) -> Response[bytes]:
    producer = _FRAME_PRODUCERS.get(operation)
    if producer is None:
        raise unknown_resource()
    return await producer(request, services, resource_id, frame_index(index))


def _instance_handler(operation: str) -> HTTPRouteHandler:
    """``/instances/{id}/{operation}``: frame 0 (``numpy``: all frames)."""
    producer = _FRAME_PRODUCERS[operation]
    frame = None if operation == "numpy" else 0

    @get(f"/instances/{{resource_id:str}}/{operation}", name=f"instances-{operation}")
    async def handler(request: Request, resource_id: str, services: Services) -> Response[bytes]:
        return await producer(request, services, resource_id, frame)

    return handler


INSTANCE_IMAGE_HANDLERS = [
    _instance_handler(operation)
    for operation in ("preview", "image-uint8", "image-uint16", "image-int16", "matlab", "numpy")
]
IMAGE_HANDLERS = [instance_frames, frame_operations, frame_content, *INSTANCE_IMAGE_HANDLERS]
