"""Lua scripting, fastpacs against the reference Orthanc 1.10.1.

Both servers run the same LuaScripts file and get the same scripts, uploads
and C-STOREs. Compared:

- /tools/execute-script: print, PrintRecursive, DumpJson and ParseJson on
  every kind of value, errors and syntax errors, globals kept between
  scripts, RestApi* and Http* answers (against one HTTP receiver), the
  configuration as scripts see it;
- the callbacks: what OnStoredInstance (REST, C-STORE, an instance stored
  again) and OnStableSeries/Study/Patient receive, read back through a
  script (both states are shared with execute-script in both servers);
- ReceivedInstanceFilter over REST (FilteredOut, errors 2031 and 2034) and
  over C-STORE (statuses), and IncomingHttpRequestFilter (403, error).
"""

import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.conftest import c_store_file, dicom_variant
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import Call, ServerPair

pytestmark = pytest.mark.reference

SCRIPT = """
seen = {}
local function record(event) table.insert(seen, event) end

function OnStoredInstance(instanceId, tags, metadata, origin)
  record({ cb = 'stored', id = instanceId, patient = tags.PatientID, modality = tags.Modality,
           metadata = metadata, origin = origin })
end

local function stable(kind)
  return function(id, tags, metadata) record({ cb = kind, id = id, tags = tags, metadata = metadata }) end
end
OnStableSeries, OnStableStudy, OnStablePatient = stable('series'), stable('study'), stable('patient')

function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.PatientID == 'DIFF-REJECT' then return false end
  if dicom.PatientID == 'DIFF-FILTER-ERROR' then error('the filter failed') end
  if dicom.PatientID == 'DIFF-FILTER-NIL' then return nil end
  return true
end

function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  if headers['x-diff-block'] then return false end
  if uri == '/tools/diff-filter-error' then error('the HTTP filter failed') end
  return true
end
"""


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers what it was asked (method, path, body, credentials); ``/missing`` is a 404."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("latin-1") if length else ""
        status = 404 if self.path == "/missing" else 200
        answer = f"{self.command} {self.path} [{body}] {self.headers.get('authorization')}".encode()
        self.send_response(status)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - the names http.server calls

    def log_message(self, *_arguments) -> None:
        pass


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    directory = tmp_path_factory.mktemp("differential-lua")
    script = directory / "callbacks.lua"
    script.write_text(SCRIPT)
    options = {**COMMON_OPTIONS, "ExecuteLuaEnabled": True, "LuaScripts": [str(script)]}
    servers = ServerPair.start(directory, options)
    yield servers
    servers.stop()


def script(name: str, source: str) -> Call:
    return Call(name, "POST", "/tools/execute-script", body=source.encode())


SCRIPTS = [
    # the table of ORTHANC-BEHAVIOUR.md §19
    script("print", "print(42) print('a', 'b')"),
    script("rest api get", "local s = ParseJson(RestApiGet('/system')) print(s['DicomAet'])"),
    script("rest api get unknown", "print(RestApiGet('/patients/nonexistent'))"),
    script("return", "return 42"),
    script("print recursive", "PrintRecursive({1, 'two', {3, 4}})"),
    script("dump json", "print(DumpJson({1,2,3}))"),
    script("error", "error('boom')"),
    script("syntax error", "print("),
    # print
    script("print empty values", "print('', 'a') print('a', '', 'b') print() print(nil, 1)"),
    script("print numbers", "print(1.5, 3, 2^53, 1/0, 3/2, 7 // 2, math.tointeger(3.0))"),
    script("print booleans and nil", "print(true, false, nil)"),
    script("print recursive nested", "PrintRecursive({a = {b = 1}}) PrintRecursive('x') PrintRecursive(nil)"),
    script("print recursive limit", "local t = {} for i = 1, 5 do t[i] = i end PrintRecursive(t, 3)"),
    # DumpJson
    script("dump json object", "print(DumpJson({a=1, b={true, 'x'}, c={}}))"),
    script(
        "dump json scalars",
        "print(DumpJson(3.0), DumpJson(1e20), DumpJson('str'), DumpJson(nil), DumpJson(true))",
    ),
    script(
        "dump json doubles",
        "print(DumpJson(-0.5), DumpJson(2^63), DumpJson(0.1), DumpJson(1/3), DumpJson(-0.0))",
    ),
    script("dump json int32", "print(DumpJson(2^31), DumpJson(2^31-1), DumpJson(-2^31), DumpJson(-2^31-1))"),
    script("dump json large integers", "print(DumpJson(2^40), DumpJson(4294967296), DumpJson(2^53//1))"),
    script("dump json infinities", "print(DumpJson(1/0), DumpJson(-1/0), DumpJson(0/0))"),
    script("dump json numeric strings", "print(DumpJson({a='123', b='1.5', c='x', d=' 12 ', e='0x10'}))"),
    script("dump json keep strings", "print(DumpJson({a='123'}, true), DumpJson({a='123'}, false))"),
    script("dump json sparse", "print(DumpJson({1, 2, x=3}), DumpJson({[2]=1}), DumpJson({[0]=1, 2}))"),
    script("dump json holes", "print(DumpJson({[1]=1,[2]=2,[4]=4}), DumpJson({'a', nil, 'c'}))"),
    script("dump json key order", "print(DumpJson({[3]=1, [1]=2, [2]=3}), DumpJson({['1']='a'}))"),
    script("dump json float key", "print(DumpJson({[1.5]=1}), DumpJson({[-1]=1}))"),
    script("dump json long array", "local t = {} for i = 12, 1, -1 do t[i] = i end print(DumpJson(t))"),
    script("dump json sorted keys", "print(DumpJson({z=1, a=2, ['10']=3, ['9']=4}))"),
    script(
        "dump json escapes",
        "print(DumpJson('a\"b\\\\c\\n\\t\\1é'), DumpJson('\\u{1F600}'), DumpJson('\\xff'))",
    ),
    script("dump json nested empty", "print(DumpJson({x={}, y={{}}}))"),
    script("dump json function", "print(DumpJson(print))"),
    script("dump json without argument", "print(DumpJson())"),
    script("dump json boolean key", "print(DumpJson({[true]=1}))"),
    # ParseJson
    script(
        "parse json numbers",
        "local t = ParseJson('[1, 2.0, 3.5, 1e300, 12345678901234567890, -3, \"5\", true, false]') "
        "for i, v in ipairs(t) do print(i, math.type(v), v) end",
    ),
    script(
        "parse json round trip",
        'print(DumpJson(ParseJson(\'{"a": [1, 2.5, null, "s"], "e": {}, "f": []}\')))',
    ),
    script("parse json scalars", "print(ParseJson('null')) print(ParseJson('3')) print(ParseJson('\"s\"'))"),
    script("parse json invalid", "print(ParseJson('{bad')) print(ParseJson(42)) print(ParseJson())"),
    # REST API
    script(
        "rest api get builtin",
        "print(RestApiGet('/system', false) ~= nil, RestApiGet('/system', true) ~= nil)",
    ),
    script("rest api get headers", "print(RestApiGet('/system', false, {['x-a']='b'}) ~= nil)"),
    script(
        "rest api get bad parameters",
        "print(RestApiGet(), RestApiGet('/system', 'x'), RestApiGet('/system', false, {}, 4))",
    ),
    script("rest api get unknown route", "print(RestApiGet('/nonexistent'))"),
    script("rest api get plain", "print(RestApiGet('/tools/metrics'))"),
    script("rest api post", "print(RestApiPost('/tools/lookup', 'no such thing'))"),
    script("rest api post table", "print(RestApiPost('/tools/lookup', {a=1}))"),
    script(
        "rest api put",
        "print(RestApiPut('/tools/metrics', 'maybe')) print(RestApiPut('/tools/metrics', 'true'))",
    ),
    script("rest api delete", "print(RestApiDelete('/instances/nonexistent'))"),
    # globals, configuration
    script("global set", "diff_global = 5"),
    script("global read", "print(diff_global)"),
    script(
        "configuration",
        "local c = GetOrthancConfiguration() print(c.DicomAet, c.StableAge, c.Name, c.ExecuteLuaEnabled)",
    ),
]


@pytest.mark.parametrize("call", SCRIPTS, ids=str)
def test_execute_script(pair: ServerPair, call: Call) -> None:
    check = pair.checker()
    check.compare(call)
    check.verdict()


def test_http_client_functions(pair: ServerPair, echo: str) -> None:
    check = pair.checker()
    check.compare(
        script(
            "http functions",
            f"print(HttpGet('{echo}/a')) print(HttpPost('{echo}/b', 'posted')) print(HttpPost('{echo}/c')) "
            f"print(HttpPut('{echo}/d', 'put', {{['x-a'] = 1}})) print(HttpDelete('{echo}/e')) "
            f"print(HttpGet('{echo}/missing'), HttpDelete('{echo}/missing')) "
            f"print(HttpGet('http://127.0.0.1:1/'), HttpPost('{echo}/b', {{}}))",
        )
    )
    check.compare(
        script(
            "http credentials",
            f"SetHttpCredentials('alice', 's3cret') print(HttpGet('{echo}/f')) "
            f"SetHttpCredentials('', '') print(HttpGet('{echo}/g'))",
        )
    )
    check.verdict()


def identifiers(data: bytes) -> tuple[str, str]:
    dataset = pydicom.dcmread(io.BytesIO(data))
    return dataset.PatientID, dataset.SOPInstanceUID


def test_received_instance_filter_over_rest(pair: ServerPair) -> None:
    check = pair.checker()
    for patient, instance in (("DIFF-REJECT", "1"), ("DIFF-FILTER-ERROR", "2"), ("DIFF-FILTER-NIL", "3")):
        data = dicom_variant(patient_id=patient, instance=f"77{instance}")
        check.compare(Call(f"upload {patient}", "POST", "/instances", body=data))
    check.compare(Call("patients after the filter", "GET", "/patients"))
    check.verdict()


def test_received_instance_filter_over_dicom(pair: ServerPair) -> None:
    for patient, instance in (("DIFF-REJECT", "4"), ("DIFF-FILTER-ERROR", "5"), ("DIFF-FILTER-NIL", "6")):
        data = dicom_variant(patient_id=patient, instance=f"77{instance}")
        assert c_store_file(pair.fastpacs, data, "DIFFSCU") == c_store_file(pair.orthanc, data, "DIFFSCU"), (
            patient
        )


def test_incoming_http_request_filter(pair: ServerPair) -> None:
    check = pair.checker()
    check.compare(Call("http filter refuses", "GET", "/system", headers={"x-diff-block": "1"}))
    check.compare(Call("http filter fails", "GET", "/tools/diff-filter-error"))
    check.compare(Call("http filter accepts", "GET", "/statistics"))
    check.verdict()


def test_callbacks_receive_what_orthanc_gives(pair: ServerPair) -> None:
    by_rest = dicom_variant(patient_id="DIFF-STORED", study="78", series="78", instance="781")
    by_dicom = dicom_variant(patient_id="DIFF-STORED", study="78", series="78", instance="782")
    check = pair.checker()
    check.compare(Call("upload for callbacks", "POST", "/instances", body=by_rest))
    check.compare(Call("upload again for callbacks", "POST", "/instances", body=by_rest))
    assert (
        c_store_file(pair.fastpacs, by_dicom, "DIFFSCU")
        == c_store_file(pair.orthanc, by_dicom, "DIFFSCU")
        == 0
    )
    pair.wait_until_stable()
    read = script("read callbacks", "print(DumpJson(seen, true))")
    seen = []
    for server in (pair.orthanc_client, pair.fastpacs_client):

        def events(server=server) -> list[dict]:
            answer = server.post(read.path, content=read.body)
            answer.raise_for_status()
            return json.loads(answer.text)

        recorded = wait_for_events(events, {"stored": 3, "series": 1, "study": 1, "patient": 1})
        seen.append(_by_kind(recorded))
    check.compare_documents("callback arguments", seen[0], seen[1])
    check.verdict()


def _by_kind(events: list[dict]) -> dict[str, list[dict]]:
    """Events by callback (and origin for OnStoredInstance), so that differences name them."""
    grouped: dict[str, list[dict]] = {}
    for event in sorted(events, key=lambda event: event["id"]):
        kind = f"{event['cb']} {event.get('origin', {}).get('RequestOrigin', '')}".strip()
        grouped.setdefault(kind, []).append(event)
    return grouped


def wait_for_events(read, expected: dict[str, int], timeout: float = 20.0) -> list[dict]:
    """The events recorded once there are at least as many of each kind as expected."""
    deadline = time.monotonic() + timeout
    while True:
        events = [event for event in read() if event.get("patient", "DIFF-STORED") == "DIFF-STORED"]
        counts = {kind: sum(event["cb"] == kind for event in events) for kind in expected}
        if all(counts[kind] >= number for kind, number in expected.items()) or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


def test_lua_off_is_an_empty_403(tmp_path: Path) -> None:
    servers = ServerPair.start(tmp_path, {**COMMON_OPTIONS, "ExecuteLuaEnabled": False})
    try:
        check = servers.checker()
        check.compare(script("lua disabled", "print(1)"))
        check.compare(Call("lua disabled GET", "GET", "/tools/execute-script"))
        check.verdict()
    finally:
        servers.stop()
