"""JSON request bodies read as Orthanc 1.10.1 reads them, on every route that takes one.

Orthanc parses bodies with JsonCpp's lenient default reader (a UTF-8 BOM is
skipped, comments and trailing commas pass, whatever follows the document is
ignored, invalid UTF-8 in strings passes). Each route gets the same set of
bodies built around a valid one, with a BOM, whitespace, comments, a trailing
comma, NaN, duplicate keys, a bare scalar... and the two servers must answer
alike (status and error body).

The "valid" body of a route is chosen to reach a semantic error or a harmless
answer (an empty find, a failed association with a closed port), so that a
body read as JSON and one refused as not JSON answer differently.

Deep nesting is sent to fastpacs alone: Orthanc 1.10.1 crashes (the whole
server) on a few hundred nested ``[``, while fastpacs refuses the body as it
refuses any other that is not JSON.
"""

from collections.abc import Iterator

import pytest

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import test_file
from tests.differential.harness import Answer, Call, ServerPair, answer_differences

pytestmark = pytest.mark.reference

BOM = b"\xef\xbb\xbf"
CLOSED = ["CLOSED", "127.0.0.1", 1]
"""A modality nobody listens to: associations fail at once, alike on both servers."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    options = {
        **COMMON_OPTIONS,
        "DicomModalities": {"closed": CLOSED},
        "OrthancPeers": {"closed": ["http://127.0.0.1:1/"]},
    }
    servers = ServerPair.start(tmp_path_factory.mktemp("differential-json"), options)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def ids(pair: ServerPair) -> dict[str, str]:
    """The instance, series, study and patient of CT_small.dcm (stored on both servers)."""
    answers = pair.upload_all({"CT_small.dcm": test_file("CT_small.dcm").read_bytes()})
    answer = answers["CT_small.dcm"]
    return {
        "instance": answer["ID"],
        "series": answer["ParentSeries"],
        "study": answer["ParentStudy"],
        "patient": answer["ParentPatient"],
    }


def routes(ids: dict[str, str]) -> list[tuple[str, str, str, bytes]]:
    """(name, method, path, valid body) of every route whose body is JSON."""
    instance, series, study = ids["instance"], ids["series"], ids["study"]
    return [
        ("find", "POST", "/tools/find", b'{"Level":"Patient","Query":{}}'),
        ("bulk-content", "POST", "/tools/bulk-content", b'{"Resources":[]}'),
        ("bulk-delete", "POST", "/tools/bulk-delete", b'{"Resources":[]}'),
        ("bulk-modify", "POST", "/tools/bulk-modify", b'{"Resources":[],"Replace":{},"Level":"Nope"}'),
        ("bulk-anonymize", "POST", "/tools/bulk-anonymize", b'{"Resources":[],"Level":"Nope"}'),
        ("instance-modify", "POST", f"/instances/{instance}/modify", b'{"Replace":{},"Keep":7}'),
        ("instance-anonymize", "POST", f"/instances/{instance}/anonymize", b'{"Keep":7}'),
        ("series-modify", "POST", f"/series/{series}/modify", b'{"Replace":{},"Keep":7}'),
        ("study-anonymize", "POST", f"/studies/{study}/anonymize", b'{"Keep":7}'),
        ("study-split", "POST", f"/studies/{study}/split", b'{"Series":[],"Replace":{}}'),
        ("study-merge", "POST", f"/studies/{study}/merge", b'{"Resources":[]}'),
        ("create-dicom", "POST", "/tools/create-dicom", b'{"Content":"nope","Tags":{"PatientName":"X"}}'),
        ("create-archive", "POST", "/tools/create-archive", b'{"Resources":7}'),
        ("create-media", "POST", "/tools/create-media", b'{"Resources":7}'),
        ("study-archive", "POST", f"/studies/{study}/archive", b'{"Synchronous":7}'),
        ("study-media", "POST", f"/studies/{study}/media", b'{"Synchronous":7}'),
        ("modality-put", "PUT", "/modalities/other", b'{"AET":"X","Host":"127.0.0.1","Port":"nope"}'),
        ("modality-echo", "POST", "/modalities/closed/echo", b'{"Timeout":"x"}'),
        ("dicom-echo", "POST", "/tools/dicom-echo", b'{"AET":"X","Host":"127.0.0.1","Port":"nope"}'),
        ("modality-store", "POST", "/modalities/closed/store", b'{"Resources":7}'),
        ("modality-query", "POST", "/modalities/closed/query", b'{"Level":"Nope","Query":{}}'),
        ("modality-move", "POST", "/modalities/closed/move", b'{"Level":"Nope","Resources":[]}'),
        ("modality-find-patient", "POST", "/modalities/closed/find-patient", b'{"PatientName":"X"}'),
        ("modality-find-study", "POST", "/modalities/closed/find-study", b'{"PatientID":""}'),
        ("modality-find", "POST", "/modalities/closed/find", b'{"PatientName":"X"}'),
        ("modality-find-worklist", "POST", "/modalities/closed/find-worklist", b'{"PatientName":"X"}'),
        ("storage-commitment", "POST", "/modalities/closed/storage-commitment", b'{"DicomInstances":7}'),
        ("peer-put", "PUT", "/peers/other", b'{"Url":7}'),
        ("peer-store", "POST", "/peers/closed/store", b'{"Resources":7}'),
        ("accepted-transfer-syntaxes", "PUT", "/tools/accepted-transfer-syntaxes", b"7"),
    ]


def bodies(valid: bytes) -> list[tuple[str, bytes]]:
    """(case, body): the valid body dressed up, and bodies that are not the JSON the route wants."""
    cases = [
        ("valid", valid),
        ("bom", BOM + valid),
        ("bom and whitespace", BOM + b" \n\t" + valid + b"\n"),
        ("whitespace", b" \r\n\t" + valid + b" \n"),
        ("empty", b""),
        ("whitespace only", b" \n"),
        ("bom only", BOM),
        ("two boms", BOM + BOM + valid),
        ("utf-16le bom", b"\xff\xfe" + valid.decode().encode("utf-16-le")),
        ("utf-16be bom", b"\xfe\xff" + valid.decode().encode("utf-16-be")),
        ("bare string", b'"abc"'),
        ("bare number", b"42"),
        ("null", b"null"),
        ("true", b"true"),
        ("empty array", b"[]"),
        ("garbage", b"xyz"),
        ("truncated", valid[:-1]),
        ("nested 100 deep", b"[" * 100 + b"]" * 100),
    ]
    if not valid.startswith(b"{"):
        return cases
    members = valid[1:-1]
    first_key = members.split(b'"')[1]
    return [
        *cases,
        ("invalid utf-8 key", b'{"J\xffk":1,' + members + b"}"),
        ("invalid utf-8 value", b'{"Junk":"\xc3\x28",' + members + b"}"),
        ("control character", b'{"Junk":"a\x01b",' + members + b"}"),
        ("nan", b'{"Junk":NaN,' + members + b"}"),
        ("infinity", b'{"Junk":Infinity,' + members + b"}"),
        ("minus infinity", b'{"Junk":-Infinity,' + members + b"}"),
        ("duplicate key last", valid[:-1] + b',"' + first_key + b'":"dup"}'),
        ("duplicate key first", b'{"' + first_key + b'":"dup",' + members + b"}"),
        ("trailing comma", valid[:-1] + b",}"),
        ("lone comma", b'{"Junk":[,],' + members + b"}"),
        ("line comments", b"// start\n" + valid + b"// end"),
        ("block comments", b"/* start */{/* inside */" + members + b"}/* end */"),
        ("unclosed comment", valid[:-1] + b"/* open"),
        ("trailing garbage", valid + b" xyz"),
        ("two documents", valid + valid),
        ("trailing nul", valid + b"\x00"),
        ("single quotes", b"{'Junk':1," + members + b"}"),
        ("lenient numbers", b'{"A":01,"B":+1,"C":1.,' + members + b"}"),
        ("big integer", b'{"Junk":123456789012345678901234567890,' + members + b"}"),
    ]


def test_json_bodies_answered_as_orthanc(pair: ServerPair, ids: dict[str, str]) -> None:
    check = pair.checker()
    try:
        for route, method, path, valid in routes(ids):
            for case, body in bodies(valid):
                check.compare(Call(f"json-body {route} {case}", method, path, body=body))
    finally:  # some bodies set no accepted transfer syntax (as Orthanc): accept them all again
        for client in (pair.orthanc_client, pair.fastpacs_client):
            client.put("/tools/accepted-transfer-syntaxes", content=b'"*"')
    check.verdict()


def test_unparsed_transfer_syntax_patterns_as_orthanc(pair: ServerPair) -> None:
    """Unquoted patterns: a body JsonCpp reads as a number (``1.2.840...``) or not at all (``*``)."""
    check = pair.checker()
    try:
        for pattern in (
            b"1.2.840.10008.1.2",
            b"1.2.840.10008.1.2.4.*",
            b"*",
            b"abc",
            b"tru",
            b"truex",
            b".5",
        ):
            name = f"json-body transfer syntax {pattern.decode()}"
            check.compare(Call(name, "PUT", "/tools/accepted-transfer-syntaxes", body=pattern))
    finally:
        for client in (pair.orthanc_client, pair.fastpacs_client):
            client.put("/tools/accepted-transfer-syntaxes", content=b'"*"')
    check.verdict()


def test_deep_nesting_refused_as_any_other_non_json(pair: ServerPair, ids: dict[str, str]) -> None:
    """fastpacs alone (Orthanc crashes): 10,000 ``[`` answer as the route answers ``xyz``."""
    client = pair.fastpacs_client
    try:
        for route, method, path, _valid in routes(ids):
            for deep in (b"[" * 10_000, b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 5_000):
                answer = client.request(method, path, content=deep)
                garbage = client.request(method, path, content=b"xyz")
                assert (answer.status_code, answer.content) == (garbage.status_code, garbage.content), route
                assert answer.status_code < 500, route
    finally:
        client.put("/tools/accepted-transfer-syntaxes", content=b'"*"')
    assert client.get("/system").status_code == 200


def test_query_bodies_answered_as_orthanc(pair: ServerPair, ids: dict[str, str]) -> None:
    """The bodies of a query's child queries and retrieves.

    Both servers query the reference Orthanc (registered as ``orthanc``), so that the answers, and
    the C-MOVE statuses of retrieves to odd AETs the bodies name, come from the same SCP.
    """
    check = pair.checker()
    query_paths = []
    node = {"AET": pair.orthanc.aet, "Host": "127.0.0.1", "Port": pair.orthanc.dicom_port}
    for client in (pair.orthanc_client, pair.fastpacs_client):
        assert client.put("/modalities/orthanc", json=node).status_code == 200
        query = client.post("/modalities/orthanc/query", json={"Level": "Study", "Query": {}})
        assert query.status_code == 200, query.text
        query_paths.append(query.json()["Path"])
    for route, suffix, valid in (
        ("query-child", "/answers/0/query-series", b'{"Query":7}'),
        ("query-retrieve-answer", "/answers/0/retrieve", b'{"TargetAet":7}'),
        ("query-retrieve", "/retrieve", b'{"TargetAet":7}'),
    ):
        for case, body in bodies(valid):
            call = Call(f"json-body {route} {case}", "POST", f"<query>{suffix}", body=body)
            orthanc, fastpacs = (
                Answer.of(client.post(path + suffix, content=body))
                for client, path in zip((pair.orthanc_client, pair.fastpacs_client), query_paths, strict=True)
            )
            for answer in (orthanc, fastpacs):  # a new query (an empty body asks for all series)
                if isinstance(answer.json, dict) and "ID" in answer.json:
                    answer.json = {**answer.json, "ID": "<id>", "Path": "<path>"}
                if isinstance(answer.json, dict) and "Uri" in answer.json:  # an error names the query
                    answer.json = {**answer.json, "Uri": "<query>"}
            check.record(call, answer_differences(orthanc, fastpacs, call, ({}, {})))
    check.verdict()
