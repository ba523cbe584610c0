"""fastpacs's OpenAPI document (/openapi.json) against the reference Orthanc's routes.

Orthanc 1.10.1 serves no OpenAPI document (``Orthanc --openapi`` writes one
offline, after downloading samples), so the document is fastpacs's own: a
path Orthanc does not use. What is compared is what it describes: every
documented path, asked with a method the document does not list for it,
gets from Orthanc the same 405 and the same ``Allow`` header as from
fastpacs, so Orthanc has the route and exactly the documented methods.
"""

import re

import pytest

from tests.differential.harness import Call, ServerPair

pytestmark = pytest.mark.reference

OPENAPI_PATH = "/openapi.json"
UNDOCUMENTED_METHODS = ("GET", "POST", "DELETE", "PUT")
"""The order in which a method the document does not list is chosen: the harmless ones first."""
PARAMETERS = {
    "resource_id": "nonexistent",
    "instance_id": "nonexistent",
    "study_id": "nonexistent",
    "job_id": "nonexistent",
    "query_id": "nonexistent",
    "transaction_uid": "nonexistent",
    "index": "0",
    "path": "0010-0010",
    "child": "query-series",
    "output": "archive",
    "operation": "raw",
}
NAMES = {
    "attachments": "dicom",
    "metadata": "Origin",
    "modalities": "nowhere",
    "peers": "nowhere",
    "plugins": "nosuch",
}
"""A value of ``{name}`` after each of the segments it follows."""


def _concrete(template: str) -> str:
    """A path the template matches: its parameters replaced by values of the right kind."""
    segments = template.split("/")
    for position, segment in enumerate(segments):
        parameter = re.fullmatch(r"\{(\w+)\}", segment)
        if parameter is None:
            continue
        name = parameter.group(1)
        segments[position] = NAMES[segments[position - 1]] if name == "name" else PARAMETERS[name]
    return "/".join(segments)


def test_documented_routes_and_methods_are_orthancs(pair: ServerPair) -> None:
    document = pair.fastpacs_get(OPENAPI_PATH)
    assert pair.orthanc_client.get(OPENAPI_PATH).status_code == 404, "Orthanc serves no such document"
    check = pair.checker()
    for template, operations in document["paths"].items():
        documented = {method.upper() for method in operations}
        method = next(method for method in UNDOCUMENTED_METHODS if method not in documented)
        check.compare(Call(f"openapi {method} {template}", method, _concrete(template)))
    check.verdict()


def test_other_methods_on_catch_all_routes(pair: ServerPair) -> None:
    """Routes ending with a catch-all segment, where Orthanc's router answers a wrong method its own way."""
    check = pair.checker()
    for path in (
        "/instances/nonexistent/content",
        "/instances/nonexistent/content/0010-0010",
        "/instances/nonexistent/content/0008-1140/0/0008-1150",
        "/jobs/nonexistent/archive",
        "/jobs/nonexistent/pause",
        "/app/explorer.html",
        "/app/nosuch.js",
    ):
        for method in ("GET", "POST", "PUT", "DELETE"):
            check.compare(Call(f"catch-all {method} {path}", method, path))
    check.verdict()
