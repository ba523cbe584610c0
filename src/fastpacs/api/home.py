"""GET / as Orthanc answers it, the page it points to, /plugins, and the OpenAPI document of the routes.

Orthanc redirects ``/`` to its web interface, ``app/explorer.html``.
fastpacs has no web interface of its own: that page says so and points
to what a person can use instead. fastpacs has no plugins either: /plugins
lists what Orthanc lists without any, the script its web interface loads
for their extensions (empty but for a comment). The OpenAPI document
describes every route fastpacs serves; Litestar builds it from the route
handlers the first time it is asked for, so it costs requests nothing.
"""

from litestar import Response, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from fastpacs import ORTHANC_API_VERSION, __version__
from fastpacs.api.responses import json_response
from fastpacs.errors import BareHttpError

OPENAPI_PATH = "/openapi.json"
"""A path Orthanc does not use."""

EXPLORER_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>fastpacs</title></head>
<body>
<h1>fastpacs {__version__}</h1>
<p>This server speaks the REST API of Orthanc {ORTHANC_API_VERSION} and has no web interface of its own.
Use an Orthanc-compatible viewer or client, or the API directly:</p>
<ul>
<li><a href="../system">/system</a>: this server</li>
<li><a href="../statistics">/statistics</a>: what it stores</li>
<li><a href="..{OPENAPI_PATH}">{OPENAPI_PATH}</a>: the OpenAPI description of every route</li>
</ul>
</body>
</html>
""".encode()


@get("/", name="root", include_in_schema=False)
async def root() -> Response[bytes]:
    return Response(b"", status_code=301, headers={"Location": "app/explorer.html"})


@get("/app/explorer.html", name="explorer", include_in_schema=False)
async def explorer() -> Response[bytes]:
    return Response(EXPLORER_PAGE, media_type="text/html")  # Litestar adds "; charset=utf-8"


@get(["/app", "/app/{path:path}"], name="app-files", include_in_schema=False)
async def app_files() -> Response[bytes]:
    """Orthanc serves its web interface below /app: anything else there is an empty 404."""
    raise BareHttpError(404)


EXPLORER_EXTENSIONS = "explorer.js"
"""What Orthanc lists in /plugins when it runs none: the script of their web interface extensions."""
EXPLORER_EXTENSIONS_SCRIPT = b"// Extensions to Orthanc Explorer by the registered plugins\n\n"


@get("/plugins", name="plugins")
async def plugins() -> Response[bytes]:
    return json_response([EXPLORER_EXTENSIONS])


@get(f"/plugins/{EXPLORER_EXTENSIONS}", name="plugins-explorer-extensions")
async def explorer_extensions() -> Response[bytes]:
    return Response(EXPLORER_EXTENSIONS_SCRIPT, media_type="application/javascript")


@get("/plugins/{name:str}", name="plugin")
async def plugin() -> Response[bytes]:
    """No plugin of that name: an empty 404, as Orthanc answers."""
    raise BareHttpError(404)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="fastpacs",
        version=__version__,
        description=f"The REST API of Orthanc {ORTHANC_API_VERSION}, as fastpacs serves it.",
        path=OPENAPI_PATH,
        render_plugins=[JsonRenderPlugin(path="/")],
        use_handler_docstrings=True,
    )


HOME_HANDLERS = [root, explorer, app_files, plugins, explorer_extensions, plugin]
