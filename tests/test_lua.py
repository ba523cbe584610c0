"""Lua scripting: /tools/execute-script, Orthanc's Lua API, the callbacks of LuaScripts, the limits.

One server runs the script below (every callback records what it was given
in the global ``events``, which /tools/execute-script then reads: both share
the main Lua state, as in Orthanc). Beside it: a DICOM receiver (the
auto-routing target) and an HTTP receiver (for HttpGet and friends, and for
``Finalize``, which can only report to the outside).
"""

import contextlib
import http.server
import io
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import httpx
import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from fastpacs.testing import ServerProcess, fastpacs_server, free_port
from tests.conftest import c_store_file, dicom_variant, orthanc_id, wait_for

SCRIPT = """
events = {}
local function record(event) table.insert(events, event) end

function Initialize() initialized = true end
function OnHeartBeat() beats = (beats or 0) + 1 end

function OnStoredInstance(instanceId, tags, metadata, origin)
  record({ cb = 'stored', id = instanceId, patient = tags.PatientID, metadata = metadata, origin = origin })
  if tags.PatientID == 'LUA-ROUTE' then
    Delete(SendToModality(instanceId, 'router'))
  elseif tags.PatientID == 'LUA-PEER' then
    SendToPeer(instanceId, 'receiver')
  elseif tags.PatientID == 'LUA-CALL' then
    CallSystem(instanceId, 'cp', { '-t', '/tmp' })
  elseif tags.PatientID == 'LUA-MODIFY' and origin.RequestOrigin ~= 'Lua' then
    ModifyInstance(instanceId, { PatientName = 'MODIFIED^BY^LUA' }, { 'StudyDescription' })
  end
end

local function stable(kind)
  return function(id, tags, metadata) record({ cb = kind, id = id, tags = tags, metadata = metadata }) end
end
OnStableSeries, OnStableStudy, OnStablePatient = stable('series'), stable('study'), stable('patient')

function OnJobSubmitted(id) record({ cb = 'submitted', id = id }) end
function OnJobSuccess(id) record({ cb = 'success', id = id }) end
function OnJobFailure(id) record({ cb = 'failure', id = id }) end

function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.PatientID == 'LUA-REJECT' then return false end
  if dicom.PatientID == 'LUA-FILTER-ERROR' then error('the filter failed') end
  if dicom.PatientID == 'LUA-FILTER-NIL' then return nil end
  if dicom.PatientID == 'LUA-FILTER-ARGS' then
    -- The filter has a Lua state of its own: it reports to the main one through the REST API.
    filtered = true
    local seen = DumpJson({ origin = origin, info = info, modality = dicom.Modality }, true)
    RestApiPost('/tools/execute-script', 'filter_arguments = [[' .. seen .. ']]')
    return false
  end
  return true
end

function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  if headers['x-lua-block'] then return false end
  if uri == '/tools/lua-filter-error' then error('the HTTP filter failed') end
  if headers['x-lua-record'] then
    local header = headers['x-lua-record']
    record({ cb = 'http', method = method, uri = uri, ip = ip, username = username, header = header })
  end
  return true
end
"""


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every request; ``/slow`` answers after 3 s, ``/missing`` is a 404."""

    requests: ClassVar[list[dict]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        Receiver.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body.decode("latin-1"),
                "authorization": self.headers.get("authorization"),
                "x-test": self.headers.get("x-test"),
            }
        )
        if self.path == "/slow":
            time.sleep(3)
        status = 404 if self.path == "/missing" else 200
        answer = b"not here" if status == 404 else f"{self.command} {self.path} {body.decode()}".encode()
        self.send_response(status)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # /slow: the client may have given up
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - the names http.server calls

    def log_message(self, *_arguments) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def router() -> Iterator[tuple[int, list[pydicom.Dataset]]]:
    """A storage SCP (AET ROUTER): the auto-routing target."""
    received: list[pydicom.Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0

    ae = AE(ae_title="ROUTER")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    scp = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield port, received
    scp.shutdown()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, router: tuple[int, list[pydicom.Dataset]], receiver: str
) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("lua")
    script = directory / "callbacks.lua"
    script.write_text(SCRIPT)
    options = {
        "ExecuteLuaEnabled": True,
        "LuaScripts": [str(script)],
        "StableAge": 1,
        "LuaTimeLimit": 2,
        "LuaMemoryLimit": 64,
        "LuaHeartBeatPeriod": 1,
        "WorkerProcesses": 1,
        "DicomModalities": {
            "router": ["ROUTER", "127.0.0.1", router[0]],
            "closed": ["CLOSED", "127.0.0.1", free_port()],
        },
        "OrthancPeers": {"receiver": [receiver]},
    }
    process = fastpacs_server(directory, options).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


def run(client: httpx.Client, script: str) -> str:
    """Run a script that must succeed; what it printed."""
    answer = client.post("/tools/execute-script", content=textwrap.dedent(script))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/plain"
    return answer.text


def line_of(text: str) -> int:
    """The line of SCRIPT where ``text`` is, as Lua numbers it in error messages."""
    return next(number for number, line in enumerate(SCRIPT.splitlines(), 1) if text in line)


def events(client: httpx.Client, kind: str) -> list[dict]:
    return [
        event for event in json.loads(run(client, "print(DumpJson(events, true))")) if event["cb"] == kind
    ]


def identifiers(data: bytes) -> tuple[str, ...]:
    dataset = pydicom.dcmread(io.BytesIO(data))
    return (
        dataset.PatientID,
        dataset.StudyInstanceUID,
        dataset.SeriesInstanceUID,
        dataset.SOPInstanceUID,
    )


# --------------------------------------------------------------------------- execute-script and values


def test_print_joins_its_arguments_and_return_prints_nothing(client: httpx.Client) -> None:
    assert run(
        client, "print(42) print('a', 'b') print('', 'c') print('d', '', 'e') print() print(nil, true)"
    ) == ("42\na, b\nc\nd, , e\n\nnil, true\n")
    assert run(client, "return 42") == ""


def test_print_recursive(client: httpx.Client) -> None:
    assert run(client, "PrintRecursive({1, 'two', {3, 4}})") == (
        "table\n\t[1], number, 1\n\t[2], string, two\n\t[3], table\n"
        "\t[3]\t[1], number, 3\n\t[3]\t[2], number, 4\n"
    )
    assert run(client, "PrintRecursive(7)") == "number, 7\n"
    assert run(client, "local t = {} for i = 1, 200 do t[i] = i end PrintRecursive(t, 3)").splitlines()[
        -1
    ] == ("ERROR: Item limit reached.")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{a=1, b={true, 'x'}, c={}}", '{"a":1,"b":[true,"x"],"c":[]}'),
        ("3.0", "3"),
        ("2^31", "2147483648.0"),
        ("0.1", "0.10000000000000001"),
        ("1/0", "1e+9999"),
        ("0/0", "null"),
        ("{'a', nil, 'c'}", '{"1":"a","3":"c"}'),
        ("{[3]=1, [1]=2, [2]=3}", "[2,3,1]"),
        ("{['1']='a'}", '["a"]'),
        ("{a='123', b=' 0x10 ', c='x'}", '{"a":123,"b":16,"c":"x"}'),
        ("'a\"b\\\\c\\n\\1é'", '"a\\"b\\\\c\\n\\u0001\\u00e9"'),
        ("print", "null"),
    ],
)
def test_dump_json_follows_orthanc(client: httpx.Client, expression: str, expected: str) -> None:
    assert run(client, f"print(DumpJson({expression}))") == expected + "\n"


def test_dump_json_keeps_strings_when_asked_and_parse_json_reads_numbers_as_floats(
    client: httpx.Client,
) -> None:
    assert run(client, "print(DumpJson({a='123'}, true))") == '{"a":"123"}\n'
    output = run(
        client,
        """
        local t = ParseJson('[1, 2.5, "5", true, null, {"k": []}]')
        print(t[1], math.type(t[1]), t[3], t[5], DumpJson(t[6]))
        """,
    )
    assert output == '1.0, float, 5, nil, {"k":[]}\n'
    assert run(client, "print(ParseJson('{not json'), ParseJson(), DumpJson())") == "nil, nil, nil\n"


def test_unconvertible_values_fail_the_script(client: httpx.Client) -> None:
    answer = client.post("/tools/execute-script", content="print(DumpJson({[true] = 1}))")
    assert answer.status_code == 500
    assert "table keys must be strings or numbers" in answer.json()["Details"]
    answer = client.post("/tools/execute-script", content="local t = {} t.t = t print(DumpJson(t))")
    assert answer.status_code == 500


def test_script_errors_are_orthancs_2031(client: httpx.Client) -> None:
    answer = client.post("/tools/execute-script", content="error('boom')")
    assert answer.status_code == 500
    body = answer.json()
    assert (body["OrthancStatus"], body["Message"], body["Details"]) == (
        2031,
        "Cannot execute a Lua command",
        '[string "line"]:1: boom',
    )
    answer = client.post("/tools/execute-script", content="print(")
    assert answer.json()["Details"] == '[string "line"]:1: unexpected symbol near <eof>'


def test_globals_persist_between_scripts(client: httpx.Client) -> None:
    run(client, "lua_test_counter = 41")
    assert run(client, "lua_test_counter = lua_test_counter + 1 print(lua_test_counter)") == "42\n"


def test_the_sandbox_hides_files_and_processes(client: httpx.Client) -> None:
    output = run(
        client,
        "print(io, require, dofile, loadfile, package, debug, python, os.execute, os.getenv, os.time() > 0)",
    )
    assert output == "nil, nil, nil, nil, nil, nil, nil, nil, nil, true\n"
    assert run(client, "print(load(string.dump(function() end)))").startswith(
        "nil, attempt to load a binary chunk"
    )
    assert run(client, "print(load('return 1 + 1')())") == "2\n"


# --------------------------------------------------------------------------- limits


@pytest.mark.slow
def test_a_script_that_loops_forever_is_stopped_and_the_server_keeps_working(server: ServerProcess) -> None:
    """The loop runs on the Lua thread: meanwhile HTTP and C-STORE (event loop, ingest, filter state) work.

    IncomingHttpRequestFilter is taken away for the test: with it, every HTTP request needs the
    main Lua state (as in Orthanc), so HTTP requests wait for the looping script, at most its time limit.
    """
    scripts = [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local co = coroutine.wrap(function() while true do end end) co()",
    ]
    with httpx.Client(base_url=server.base_url, timeout=30) as http, ThreadPoolExecutor(1) as background:
        run(http, "saved_http_filter, IncomingHttpRequestFilter = IncomingHttpRequestFilter, nil")
        try:
            for number, script in enumerate(scripts):
                started = time.monotonic()
                looping = background.submit(http.post, "/tools/execute-script", content=script)
                time.sleep(0.2)
                assert http.get("/system").status_code == 200
                patient = dicom_variant(patient_id="LUA-LOOP", instance=f"92{number}")
                assert c_store_file(server, patient, "LUATEST") == 0
                assert not looping.done()  # answered and stored while the script was looping
                answer = looping.result()
                assert answer.status_code == 500
                assert answer.json()["OrthancStatus"] == 2031
                assert answer.json()["Details"] == "The Lua script was stopped after 2 seconds (LuaTimeLimit)"
                assert time.monotonic() - started < 10
        finally:
            run(http, "IncomingHttpRequestFilter = saved_http_filter")
        assert run(http, "print(IncomingHttpRequestFilter ~= nil)") == "true\n"


def test_waiting_for_the_rest_api_does_not_count_against_the_time_limit(
    client: httpx.Client, receiver: str
) -> None:
    assert run(client, f"print(HttpGet('{receiver}/slow'))") == "GET /slow \n"  # 3 s, limit 2 s


def test_a_script_that_allocates_without_end_is_stopped(client: httpx.Client) -> None:
    answer = client.post("/tools/execute-script", content="local s = string.rep('x', 200 * 1024 * 1024)")
    assert answer.status_code == 500
    assert "memory" in answer.json()["Details"]
    assert run(client, "print(1)") == "1\n"


# --------------------------------------------------------------------------- Orthanc's API


def test_rest_api_functions(client: httpx.Client) -> None:
    assert run(client, "print(ParseJson(RestApiGet('/system')).DicomAet)") == "ORTHANC\n"
    assert run(
        client,
        "print(RestApiGet('/system', true) ~= nil, RestApiGet('/system', false, {['x-a'] = 'b'}) ~= nil)",
    ) == ("true, true\n")
    assert (
        run(client, "print(RestApiGet('/patients/nonexistent'), RestApiGet('/nonexistent'))") == "nil, nil\n"
    )
    assert (
        run(client, "print(RestApiGet(), RestApiGet('/system', 'x'), RestApiGet('/system', true, 4))")
        == "nil, nil, nil\n"
    )
    assert run(client, "print(RestApiPut('/tools/metrics', 'true'))") == "\n"
    assert (
        run(client, "print(RestApiPut('/tools/metrics', 'maybe'), RestApiPost('/tools/lookup', {}))")
        == "nil, nil\n"
    )
    assert run(client, "print(RestApiPost('/tools/lookup', 'no-such-identifier'))") == "[]\n"
    assert (
        run(client, "print(RestApiDelete('/changes'), RestApiDelete('/instances/nonexistent'))")
        == "true, nil\n"
    )


def test_instances_stored_by_a_script_come_from_lua(client: httpx.Client) -> None:
    data = dicom_variant(patient_id="LUA-FROM-SCRIPT", instance="901")
    rid = orthanc_id(*identifiers(data))
    client.post("/instances", content=data).raise_for_status()
    output = run(
        client,
        f"""
        local file = RestApiGet('/instances/{rid}/file')
        RestApiDelete('/instances/{rid}')
        print(ParseJson(RestApiPost('/instances', file)).Status)
        """,
    )
    assert output == "Success\n"
    metadata = client.get(f"/instances/{rid}/metadata", params={"expand": ""}).json()
    assert metadata["Origin"] == "Lua"
    assert "RemoteIP" not in metadata
    stored = wait_for(
        lambda: [
            e for e in events(client, "stored") if e["id"] == rid and e["origin"]["RequestOrigin"] == "Lua"
        ]
    )
    assert stored[-1]["origin"] == {"RequestOrigin": "Lua"}


def test_http_functions(client: httpx.Client, receiver: str) -> None:
    Receiver.requests.clear()
    output = run(
        client,
        f"""
        print(HttpGet('{receiver}/a', {{['x-test'] = 1}}))
        print(HttpPost('{receiver}/b', 'posted'))
        print(HttpPut('{receiver}/c', 'put'))
        print(HttpDelete('{receiver}/d'))
        print(HttpGet('{receiver}/missing') == '', HttpDelete('{receiver}/missing'))
        print(HttpGet('http://127.0.0.1:1/'), HttpPost('{receiver}/b', {{}}))
        SetHttpCredentials('alice', 's3cret')
        HttpGet('{receiver}/with-credentials')
        """,
    )
    assert output == "GET /a \nPOST /b posted\nPUT /c put\nSUCCESS\ntrue, nil\nnil, nil\n"
    by_path = {request["path"]: request for request in Receiver.requests}
    assert by_path["/a"]["x-test"] == "1"
    assert by_path["/a"]["authorization"] is None
    assert by_path["/with-credentials"]["authorization"] == "Basic YWxpY2U6czNjcmV0"


def test_a_script_may_call_its_own_server_over_http(server: ServerProcess, client: httpx.Client) -> None:
    """The request passes through IncomingHttpRequestFilter, in the main state that runs the script:
    the Lua thread serves it while the script waits (Orthanc would wait for itself until the timeout)."""
    output = run(client, f"print(ParseJson(HttpGet('{server.base_url}/system')).DicomAet)")
    assert output == "ORTHANC\n"


def test_set_http_timeout(client: httpx.Client, receiver: str) -> None:
    started = time.monotonic()
    assert run(client, f"SetHttpTimeout(1) print(HttpGet('{receiver}/slow')) SetHttpTimeout(60)") == "nil\n"
    assert time.monotonic() - started < 2.5


def test_get_orthanc_configuration(client: httpx.Client) -> None:
    output = run(
        client,
        """
        local c = GetOrthancConfiguration()
        print(c.DicomAet, c.StableAge, c.LuaTimeLimit, c.DicomModalities.router.AET)
        """,
    )
    assert output == "ORTHANC, 1.0, 2.0, ROUTER\n"


# --------------------------------------------------------------------------- callbacks


def test_initialize_and_heart_beat(client: httpx.Client) -> None:
    assert run(client, "print(initialized)") == "true\n"
    wait_for(lambda: run(client, "print((beats or 0) >= 2)") == "true\n")


def test_on_stored_instance_over_rest_and_dicom(server: ServerProcess, client: httpx.Client) -> None:
    by_rest = dicom_variant(patient_id="LUA-STORED", instance="902")
    by_dicom = dicom_variant(patient_id="LUA-STORED", instance="903")
    client.post("/instances", content=by_rest).raise_for_status()
    assert c_store_file(server, by_dicom, "LUATEST") == 0
    rest_id, dicom_id = orthanc_id(*identifiers(by_rest)), orthanc_id(*identifiers(by_dicom))
    stored = wait_for(
        lambda: (
            {e["id"]: e for e in events(client, "stored") if e["id"] in (rest_id, dicom_id)}
            if len({e["id"] for e in events(client, "stored")} & {rest_id, dicom_id}) == 2
            else None
        )
    )
    assert stored[rest_id]["patient"] == "LUA-STORED"
    assert stored[rest_id]["origin"] == {"RemoteIp": "127.0.0.1", "RequestOrigin": "RestApi", "Username": ""}
    assert stored[rest_id]["metadata"]["Origin"] == "RestApi"
    assert stored[rest_id]["metadata"]["TransferSyntax"] == "1.2.840.10008.1.2.1"
    assert stored[dicom_id]["origin"] == {
        "CalledAet": "ORTHANC",
        "RemoteAet": "LUATEST",
        "RemoteIp": "127.0.0.1",
        "RequestOrigin": "DicomProtocol",
    }


def test_received_instance_filter_refuses_over_rest(client: httpx.Client) -> None:
    data = dicom_variant(patient_id="LUA-REJECT", instance="904")
    rid = orthanc_id(*identifiers(data))
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200
    assert answer.json()["Status"] == "FilteredOut"
    assert answer.json()["ID"] == rid
    assert client.get(f"/instances/{rid}").status_code == 404
    failing = client.post("/instances", content=dicom_variant(patient_id="LUA-FILTER-ERROR", instance="905"))
    assert failing.status_code == 500
    assert (failing.json()["OrthancStatus"], failing.json()["Details"]) == (
        2031,
        f'[string "line"]:{line_of("the filter failed")}: the filter failed',
    )
    not_boolean = client.post(
        "/instances", content=dicom_variant(patient_id="LUA-FILTER-NIL", instance="906")
    )
    assert not_boolean.status_code == 500
    assert not_boolean.json()["OrthancStatus"] == 2034
    assert client.get("/patients").status_code == 200
    assert not [
        p
        for p in client.get("/patients", params={"expand": ""}).json()
        if p["MainDicomTags"]["PatientID"].startswith("LUA-FILTER")
    ]


def test_received_instance_filter_refuses_over_dicom(server: ServerProcess, client: httpx.Client) -> None:
    refused = dicom_variant(patient_id="LUA-REJECT", instance="907")
    assert c_store_file(server, refused, "LUATEST") == 0  # Orthanc answers Success and keeps nothing
    assert client.get(f"/instances/{orthanc_id(*identifiers(refused))}").status_code == 404
    assert (
        c_store_file(server, dicom_variant(patient_id="LUA-FILTER-ERROR", instance="908"), "LUATEST")
        == 0xA700
    )


def test_received_instance_filter_gets_origin_and_information(client: httpx.Client) -> None:
    answer = client.post("/instances", content=dicom_variant(patient_id="LUA-FILTER-ARGS", instance="909"))
    assert answer.json()["Status"] == "FilteredOut"
    assert json.loads(run(client, "print(filter_arguments)")) == {
        "info": {"HasPixelData": True, "TransferSyntaxUID": "1.2.840.10008.1.2.1"},
        "modality": "CT",
        "origin": {"RemoteIp": "127.0.0.1", "RequestOrigin": "RestApi", "Username": ""},
    }
    assert run(client, "print(filtered)") == "nil\n"  # a global of the filter's own state


def test_incoming_http_request_filter(client: httpx.Client) -> None:
    blocked = client.get("/system", headers={"x-lua-block": "yes"})
    assert (blocked.status_code, blocked.content) == (403, b"")
    failing = client.get("/tools/lua-filter-error")
    assert failing.status_code == 500
    assert (
        failing.json()["Details"]
        == f'[string "line"]:{line_of("the HTTP filter failed")}: the HTTP filter failed'
    )
    client.get("/statistics", headers={"x-lua-record": "seen"}).raise_for_status()
    recorded = events(client, "http")[-1]
    assert recorded == {
        "cb": "http",
        "method": "GET",
        "uri": "/statistics",
        "ip": "127.0.0.1",
        "username": "",
        "header": "seen",
    }


def test_auto_routing_sends_then_deletes(
    client: httpx.Client, router: tuple[int, list[pydicom.Dataset]]
) -> None:
    data = dicom_variant(patient_id="LUA-ROUTE", instance="910")
    rid = orthanc_id(*identifiers(data))
    client.post("/instances", content=data).raise_for_status()
    received = wait_for(lambda: [ds for ds in router[1] if ds.PatientID == "LUA-ROUTE"])
    assert received[0].SOPInstanceUID == identifiers(data)[3]
    wait_for(lambda: client.get(f"/instances/{rid}").status_code == 404)
    jobs = [client.get(f"/jobs/{job}").json() for job in client.get("/jobs").json()]
    lua_jobs = [job for job in jobs if job["Type"] == "SequenceOfOperations"]
    assert lua_jobs
    assert lua_jobs[-1]["Content"] == {"CountOperations": 2, "Description": "Lua"}
    submitted = {event["id"] for event in events(client, "submitted")}
    succeeded = wait_for(lambda: {event["id"] for event in events(client, "success")} & submitted)
    assert {job["ID"] for job in lua_jobs} <= succeeded


def test_modify_instance_command_stores_a_modified_copy(client: httpx.Client) -> None:
    data = dicom_variant(patient_id="LUA-MODIFY", instance="911")
    client.post("/instances", content=data).raise_for_status()

    def copies() -> list[dict]:
        stored = events(client, "stored")
        return [e for e in stored if e["patient"] == "LUA-MODIFY" and e["origin"]["RequestOrigin"] == "Lua"]

    copy = wait_for(copies)[0]
    assert copy["id"] != orthanc_id(*identifiers(data))
    tags = client.get(f"/instances/{copy['id']}/simplified-tags").json()
    assert tags["PatientName"] == "MODIFIED^BY^LUA"
    assert "StudyDescription" not in tags
    assert copy["metadata"]["Origin"] == "Lua"


def test_send_to_peer_command(client: httpx.Client) -> None:
    Receiver.requests.clear()
    client.post("/instances", content=dicom_variant(patient_id="LUA-PEER", instance="914")).raise_for_status()
    sent = wait_for(
        lambda: [r for r in Receiver.requests if (r["method"], r["path"]) == ("POST", "/instances")]
    )
    assert sent[0]["body"][128:132] == "DICM"


def test_call_system_command_needs_the_unsafe_option(server: ServerProcess, client: httpx.Client) -> None:
    client.post("/instances", content=dicom_variant(patient_id="LUA-CALL", instance="915")).raise_for_status()
    wait_for(lambda: "CallSystem() is refused" in server.log_path.read_text())


def test_on_job_failure(client: httpx.Client) -> None:
    data = dicom_variant(patient_id="LUA-JOB-FAILURE", instance="916")
    rid = client.post("/instances", content=data).json()["ID"]
    answer = client.post("/modalities/closed/store", json={"Resources": [rid], "Asynchronous": True})
    job = answer.json()["ID"]
    wait_for(lambda: job in {event["id"] for event in events(client, "failure")})
    assert job in {event["id"] for event in events(client, "submitted")}
    assert job not in {event["id"] for event in events(client, "success")}


def test_stable_callbacks(client: httpx.Client) -> None:
    data = dicom_variant(patient_id="LUA-STABLE", study="912", series="912", instance="912")
    patient, study, series, _ = identifiers(data)
    client.post("/instances", content=data).raise_for_status()
    expected = {
        "series": orthanc_id(patient, study, series),
        "study": orthanc_id(patient, study),
        "patient": orthanc_id(patient),
    }

    def all_stable():
        found = {kind: [e for e in events(client, kind) if e["id"] == rid] for kind, rid in expected.items()}
        return found if all(found.values()) else None

    found = wait_for(all_stable)
    assert found["series"][0]["tags"]["SeriesInstanceUID"] == series
    assert set(found["series"][0]["metadata"]) == {"LastUpdate", "RemoteAET"}
    assert found["study"][0]["tags"]["StudyInstanceUID"] == study
    assert found["patient"][0]["tags"]["PatientID"] == "LUA-STABLE"


# --------------------------------------------------------------------------- start and stop


@pytest.mark.slow
def test_unsafe_libraries_authentication_and_finalize(tmp_path: Path, receiver: str) -> None:
    """Opted out of the sandbox: io and CallSystem work. Also: the HTTP filter gets the user's name,
    execute-script is an empty 403 without ExecuteLuaEnabled, and Finalize runs at the stop."""
    copies = tmp_path / "copies"
    copies.mkdir()
    script = tmp_path / "unsafe.lua"
    script.write_text(
        textwrap.dedent(
            f"""
            function Initialize()
              local file = io.open('{tmp_path}/initialized.txt', 'w')
              file:write('yes')
              file:close()
            end
            function OnStoredInstance(instanceId) CallSystem(instanceId, 'cp', {{ '-t', '{copies}' }}) end
            function IncomingHttpRequestFilter(method, uri, ip, username)
              if uri == '/statistics' then HttpPost('{receiver}/filter', username) end
              return true
            end
            function Finalize() HttpPost('{receiver}/finalize', 'bye') end
            """
        )
    )
    options = {
        "LuaScripts": [str(script)],
        "LuaUnsafeLibrariesEnabled": True,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"alice": "s3cret"},
        "WorkerProcesses": 1,
    }
    process = fastpacs_server(tmp_path, options).start()
    Receiver.requests.clear()
    try:
        with httpx.Client(base_url=process.base_url, auth=("alice", "s3cret"), timeout=30) as http:
            answer = http.post("/tools/execute-script", content="print(1)")
            assert (answer.status_code, answer.content) == (403, b"")
            assert (tmp_path / "initialized.txt").read_text() == "yes"
            http.post("/instances", content=dicom_variant(patient_id="LUA-UNSAFE")).raise_for_status()
            copied = wait_for(lambda: list(copies.iterdir()))
            assert copied[0].read_bytes()[128:132] == b"DICM"
            http.get("/statistics").raise_for_status()
            assert {"method": "POST", "path": "/filter", "body": "alice"}.items() <= Receiver.requests[
                -1
            ].items()
    finally:
        process.stop()
    finalized = [request for request in Receiver.requests if request["path"] == "/finalize"]
    assert finalized and finalized[0]["body"] == "bye"


@pytest.mark.slow
def test_a_failing_script_stops_the_start_up(tmp_path: Path) -> None:
    """The start-up fails with the script's error (the process is then killed: Granian does not exit
    when the application's start-up fails, it waits)."""
    script = tmp_path / "broken.lua"
    script.write_text("function broken(")
    server = fastpacs_server(tmp_path, {"LuaScripts": [str(script)], "WorkerProcesses": 1})
    expected = f"the Lua script {script} (LuaScripts) failed: "  # the log line escapes the quotes after it
    with ThreadPoolExecutor(1) as background:
        starting = background.submit(server.start, 60)
        wait_for(lambda: server.log_path.exists() and expected in server.log_path.read_text())
        assert "expected near <eof>" in server.log_path.read_text()
        server.kill()
        with pytest.raises(RuntimeError, match="exited during start-up"):
            starting.result()
