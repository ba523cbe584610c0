"""Renderings answered by the fast lane (api/image_lane.py) are the router's answers, byte for byte.

The router's answer to the same request is obtained by adding an escaped
query argument the route ignores (``lane%2Doff=1``): the lane hands any
escaped argument on. Which requests the lane takes, and with which
arguments it calls the routes' functions, is checked against stand-in
services.
"""

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from fastpacs.api.fast_lane import FastLane
from fastpacs.api.image_lane import image_answer
from fastpacs.api.timeouts import BodyDeadlines
from fastpacs.imaging.formats import ImageFormat, Operation, Rendering
from fastpacs.metrics import ServerMetrics
from fastpacs.testing import ServerProcess
from tests.conftest import pydicom_file

ROUTED = "lane%2Doff=1"
"""An argument no route reads, escaped: the lane leaves the request to the router."""
IDENTITY = {"Accept-Encoding": "identity"}
HEADERS_COMPARED = ("content-type", "content-length", "content-encoding", "vary", "etag", "cache-control")


@pytest.fixture(scope="module")
def stored(server: ServerProcess) -> dict[str, str]:
    """IDs of a signed 16-bit CT and of a two-frame colour image."""
    ids = {}
    for name in ("CT_small.dcm", "SC_rgb_rle_2frame.dcm"):
        answer = httpx.post(f"{server.base_url}/instances", content=pydicom_file(name).read_bytes())
        assert answer.status_code == 200
        ids[name] = answer.json()["ID"]
    return ids


def _routed(path: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{ROUTED}"


def _assert_same_answer(client: httpx.Client, path: str, headers: dict[str, str]) -> httpx.Response:
    lane = client.get(path, headers=headers)
    routed = client.get(_routed(path), headers=headers)
    assert lane.status_code == routed.status_code, path
    assert lane.content == routed.content, path
    for name in HEADERS_COMPARED:
        assert lane.headers.get(name) == routed.headers.get(name), (path, name)
    return lane


@pytest.mark.parametrize(
    "suffix",
    [
        "/preview",
        "/image-uint8",
        "/image-uint16",
        "/image-int16",
        "/rendered",
        "/frames/0/preview",
        "/frames/0/image-uint8",
        "/frames/0/image-int16",
        "/frames/0/rendered",
        "/rendered?window-center=40&window-width=400&width=32&height=40&smooth=1&quality=50",
        "/frames/0/preview?quality=30&_=1700000000",
    ],
)
@pytest.mark.parametrize(
    "accept", [None, "image/jpeg", "image/x-portable-arbitrarymap", "image/*;q=0.5, image/jpeg;q=0.4"]
)
def test_lane_answers_are_the_routers(
    client: httpx.Client, stored: dict[str, str], suffix: str, accept: str | None
) -> None:
    headers = {**IDENTITY, **({"Accept": accept} if accept else {})}
    path = f"/instances/{stored['CT_small.dcm']}{suffix}"
    answer = _assert_same_answer(client, path, headers)
    jpeg = accept is not None and "image/jpeg" in accept  # an exact type wins over a wildcard
    assert answer.status_code == (404 if jpeg and "int16" in suffix else 200)  # JPEG holds 8 bits


def test_compressed_answers_are_the_routers(client: httpx.Client, stored: dict[str, str]) -> None:
    """PAM is gzipped by the HTTP conventions for the lane as for the router; PNG is not."""
    path = f"/instances/{stored['CT_small.dcm']}/frames/0/image-uint16"
    pam = {"Accept": "image/x-portable-arbitrarymap", "Accept-Encoding": "gzip"}
    assert _assert_same_answer(client, path, pam).headers["content-encoding"] == "gzip"
    assert "content-encoding" not in _assert_same_answer(client, path, {"Accept-Encoding": "gzip"}).headers


def test_second_frame_and_frames_out_of_range(client: httpx.Client, stored: dict[str, str]) -> None:
    colour, ct = stored["SC_rgb_rle_2frame.dcm"], stored["CT_small.dcm"]
    second = _assert_same_answer(client, f"/instances/{colour}/frames/1/preview", IDENTITY)
    first = client.get(f"/instances/{colour}/frames/0/preview", headers=IDENTITY)
    assert second.status_code == first.status_code == 200
    assert second.content != first.content
    assert _assert_same_answer(client, f"/instances/{colour}/frames/2/preview", IDENTITY).status_code == 415
    assert _assert_same_answer(client, f"/instances/{ct}/frames/1/rendered", IDENTITY).status_code == 404


@pytest.mark.parametrize(
    ("suffix", "status"),
    [
        ("/preview?quality=0", 415),
        ("/preview?quality=abc", 415),
        ("/frames/01/preview", 404),
        ("/frames/4294967296/image-uint8", 404),
        ("/rendered?window-center=abc", 404),
        ("/rendered?window-width=inf", 404),
        ("/rendered?smooth=maybe", 415),
        ("/rendered?width=123456", 404),
    ],
)
def test_refusals_are_the_routers(
    client: httpx.Client, stored: dict[str, str], suffix: str, status: int
) -> None:
    answer = _assert_same_answer(client, f"/instances/{stored['CT_small.dcm']}{suffix}", IDENTITY)
    assert answer.status_code == status


def test_unknown_instances_and_bad_accept_are_the_routers(client: httpx.Client) -> None:
    missing = "00000000-00000000-00000000-00000000-00000000"
    assert _assert_same_answer(client, f"/instances/{missing}/preview", IDENTITY).status_code == 404
    assert _assert_same_answer(client, "/instances/not-an-id/frames/0/rendered", IDENTITY).status_code == 404
    bad = {**IDENTITY, "Accept": "image/png;q=high"}  # the instance is looked up first: Orthanc's 404
    assert _assert_same_answer(client, f"/instances/{missing}/preview", bad).status_code == 404


def test_escaped_and_repeated_arguments_go_to_the_router(
    client: httpx.Client, stored: dict[str, str]
) -> None:
    """The router decodes ``%xx`` and reads the first of repeated arguments: answered as before."""
    path = f"/instances/{stored['CT_small.dcm']}/preview"
    jpeg = {**IDENTITY, "Accept": "image/jpeg"}
    plain = client.get(f"{path}?quality=50", headers=jpeg)
    assert client.get(f"{path}?qu%61lity=50", headers=jpeg).content == plain.content
    assert client.get(f"{path}?quality=%35%30", headers=jpeg).content == plain.content
    repeated = client.get(f"{path}?quality=50&quality=20", headers=jpeg)
    assert repeated.status_code == 200
    assert repeated.content == client.get(_routed(f"{path}?quality=50&quality=20"), headers=jpeg).content


def test_lane_answers_are_counted_under_the_route_names(client: httpx.Client, stored: dict[str, str]) -> None:
    ct = stored["CT_small.dcm"]
    routes = {
        f"/instances/{ct}/frames/0/image-uint8": "/instances/{resource_id}/frames/{index}/{operation}",
        f"/instances/{ct}/frames/0/rendered": "/instances/{resource_id}/frames/{index}/rendered",
        f"/instances/{ct}/preview": "/instances/{resource_id}/preview",
        f"/instances/{ct}/rendered": "/instances/{resource_id}/rendered",
    }
    before = {route: _counted(client, route) for route in routes.values()}
    for path in routes:
        assert client.get(path).status_code == 200
    for route in routes.values():
        assert _counted(client, route) == before[route] + 1, route


def _counted(client: httpx.Client, route: str) -> float:
    for line in client.get("/tools/metrics-prometheus").text.splitlines():
        if (
            line.startswith("fastpacs_http_request_duration_seconds_count")
            and f'route="{route}"' in line
            and 'method="GET"' in line
            and 'status="200"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---------------------------------------------------------------- which requests the lane takes

CT = "f3c8e4a1-7d26e0b9-5a1c4f37-9e0d2b68-c4a7f3e1"


class _Renderer:
    """Stand-in services recording what the routes' functions asked them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.images = SimpleNamespace(image=self._image)
        self.rendered = SimpleNamespace(rendered=self._rendered)

    async def _image(self, *arguments: object) -> bytes:
        self.calls.append(("image", *arguments[1:]))
        return b"image"

    async def _rendered(self, *arguments: object) -> bytes:
        self.calls.append(("rendered", *arguments[1:]))
        return b"rendered"


def _ask(path: str, query: bytes = b"", headers: tuple[tuple[bytes, bytes], ...] = ()) -> tuple:
    renderer = _Renderer()
    scope = {"path": path, "query_string": query, "headers": list(headers)}
    answer = asyncio.run(image_answer(renderer, scope))  # type: ignore[arg-type]
    return answer, renderer.calls


def test_lane_calls_the_routes_functions_with_the_request() -> None:
    answer, calls = _ask(
        f"/instances/{CT}/frames/3/image-uint8", b"quality=40", ((b"accept", b"image/jpeg"),)
    )
    assert calls == [("image", 3, Operation.UINT8, ImageFormat.JPEG, 40)]
    headers, body, route = answer
    assert (headers, body) == ([(b"content-type", b"image/jpeg"), (b"content-length", b"5")], b"image")
    assert route == "/instances/{resource_id}/frames/{index}/{operation}"
    answer, calls = _ask(f"/instances/{CT}/rendered", b"window-center=-40.5&window-width=400&smooth=true")
    assert calls == [("rendered", 0, Rendering(-40.5, 400.0, 0, 0, True), ImageFormat.PNG, 90)]
    assert answer[2] == "/instances/{resource_id}/rendered"


@pytest.mark.parametrize(
    ("path", "query", "headers"),
    [
        (f"/instances/{CT}/preview", b"quality=%35%30", ()),
        (f"/instances/{CT}/preview", b"quality=5+0", ()),
        (f"/instances/{CT}/preview", b"quality", ()),
        (f"/instances/{CT}/preview", b"quality=", ()),
        (f"/instances/{CT}/preview", b"quality=50&quality=50", ()),
        (f"/instances/{CT}/preview", b"quality=50;smooth=1", ()),
        (f"/instances/{CT}/preview", b"", ((b"accept", b"image/png"), (b"accept", b"image/jpeg"))),
        (f"/instances/{CT}/preview", b"quality=101", ()),
        (f"/instances/{CT}/image-int16", b"", ((b"accept", b"image/jpeg"),)),
        (f"/instances/{CT}/frames/01/preview", b"", ()),
        (f"/instances/{CT}/frames/0/raw", b"", ()),
        (f"/instances/{CT}/frames/0/preview/", b"", ()),
        (f"/series/{CT}/preview", b"", ()),
        ("/instances/not-an-id/preview", b"", ()),
    ],
)
def test_what_the_lane_leaves_to_the_router(
    path: str, query: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> None:
    answer, calls = _ask(path, query, headers)
    assert answer is None
    assert calls == []


def test_the_fast_lane_sends_the_answer_and_hands_on_the_rest() -> None:
    """The wiring in :class:`FastLane`: an image path is answered without the router, others reach it."""
    routed: list[str] = []

    async def router(scope: dict, receive: object, send: object) -> None:
        routed.append(scope["path"])

    litestar = SimpleNamespace(state=SimpleNamespace(services=_Renderer()))
    lane = FastLane(router, litestar, ServerMetrics(False), BodyDeadlines())  # type: ignore[arg-type]

    def get(path: str, query: bytes = b"") -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": []}
        asyncio.run(lane(scope, None, send))  # type: ignore[arg-type]
        return sent

    sent = get(f"/instances/{CT}/frames/0/preview")
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"image/png"), (b"content-length", b"5")],
        },
        {"type": "http.response.body", "body": b"image", "more_body": False},
    ]
    assert routed == []
    assert get(f"/instances/{CT}/preview", b"quality=%35%30") == []
    assert get(f"/instances/{CT}/frames/0/raw") == []
    assert routed == [f"/instances/{CT}/preview", f"/instances/{CT}/frames/0/raw"]
