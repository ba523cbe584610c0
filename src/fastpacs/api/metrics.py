"""/tools/metrics-prometheus and /tools/metrics (is collection on, switch it)."""

from litestar import Request, Response, get, put

from fastpacs.api.responses import empty_ok, text_response
from fastpacs.metrics import PROMETHEUS_TEXT
from fastpacs.services.registry import Services
from fastpacs.services.request_fields import boolean_body


@get("/tools/metrics-prometheus", name="tools-metrics-prometheus")
async def metrics_prometheus(services: Services) -> Response[bytes]:
    return Response(services.metrics.exposition(), headers={"content-type": PROMETHEUS_TEXT})


@get("/tools/metrics", name="tools-metrics")
async def metrics_enabled(services: Services) -> Response[bytes]:
    return text_response("1" if services.metrics.enabled else "0")


@put("/tools/metrics", name="tools-metrics-set", status_code=200)
async def set_metrics_enabled(request: Request, services: Services) -> Response[bytes]:
    services.metrics.enabled = boolean_body(await request.body())
    return empty_ok()
