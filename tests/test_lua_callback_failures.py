"""Lua callbacks that fail or never end (issue 12): the server stores, answers and keeps going.

The callbacks of ``LuaScripts`` run after the fact, on the Lua thread of the
main state, never on the event loop. So, as in Orthanc 1.10.1, an upload
whose ``OnStoredInstance`` raises an error is stored and answered Success
(REST 200, C-STORE 0x0000) and the error is logged. A callback that loops
forever, which would hold Orthanc's Lua thread for good, is stopped after
``LuaTimeLimit`` seconds (2 here) and logged the same way; meanwhile HTTP
and DICOM are served, and the callbacks queued behind it run once it is
stopped. The same holds for the stable-resource callbacks (``OnStableStudy``).

The script records the callbacks that end normally in the globals
``stored`` and ``stable``, read back through /tools/execute-script (which
shares the main state, and so also waits for a looping callback to be
stopped).

A stop drops the callbacks still queued, as Orthanc does, and runs
``Finalize()`` after the one running: a backlog of looping callbacks does
not hold it until Granian kills the process.
"""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from fastpacs.cli import SHUTDOWN_GRACE_SECONDS
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import Figures, c_store_file, dicom_variant, wait_for

pytestmark = pytest.mark.slow

T = TypeVar("T")

TIME_LIMIT = 2
"""``LuaTimeLimit``, in seconds."""
SLACK = 6.0
"""Seconds a stopped callback may take beyond the limit on a loaded machine (start, stop, the queue)."""
BACKLOG = SHUTDOWN_GRACE_SECONDS // TIME_LIMIT + 1
"""Looping callbacks queued at the stop: more Lua time than Granian's grace period."""
STOPPED = f"The Lua script was stopped after {TIME_LIMIT} seconds (LuaTimeLimit)"

SCRIPT = """
stored, stable = {}, {}

function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags.PatientID == 'LUA-RAISE' then error('OnStoredInstance failed on purpose') end
  if tags.PatientID == 'LUA-LOOP' then while true do end end
  table.insert(stored, instanceId)
end

function OnStableStudy(studyId, tags, metadata)
  local suffix = string.match(tags.StudyInstanceUID, '[^.]+$')
  if suffix == '821' then error('OnStableStudy failed on purpose') end
  if suffix == '822' then while true do end end
  table.insert(stable, studyId)
end
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("lua-failures")
    script = directory / "failures.lua"
    script.write_text(SCRIPT)
    options = {
        "ExecuteLuaEnabled": True,
        "LuaScripts": [str(script)],
        "LuaTimeLimit": TIME_LIMIT,
        "StableAge": 1,
        "WorkerProcesses": 1,
    }
    process = fastpacs_server(directory, options).start()
    yield process
    process.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def recorded(http: httpx.Client, name: str) -> list[str]:
    """The IDs a callback recorded in the global ``name`` (waits while the main state is busy)."""
    answer = http.post("/tools/execute-script", content=f"print(DumpJson({name}, true))")
    assert answer.status_code == 200, answer.text
    return json.loads(answer.text) or []  # an empty Lua table is the JSON []


def logged_errors(server: ServerProcess, callback: str) -> list[str]:
    """The errors of ``callback`` in the server's log, as the engine logs them."""
    pattern = re.compile(rf"Lua: Error in {callback}\(\): (.*?)\"?$")
    lines = server.log_path.read_text(errors="replace").splitlines()
    return [match.group(1) for line in lines if (match := pattern.search(line))]


def upload(http: httpx.Client, data: bytes) -> str:
    """POST an instance that must be stored; its ID."""
    answer = http.post("/instances", content=data)
    assert answer.status_code == 200, answer.text
    assert answer.json()["Status"] == "Success"
    return answer.json()["ID"]


def test_an_error_in_on_stored_instance_is_logged_and_the_upload_stands(
    server: ServerProcess, http: httpx.Client
) -> None:
    raising = upload(http, dicom_variant(patient_id="LUA-RAISE", instance="801"))
    assert c_store_file(server, dicom_variant(patient_id="LUA-RAISE", instance="802"), "LUAFAIL") == 0x0000
    after = upload(http, dicom_variant(patient_id="LUA-AFTER-RAISE", instance="803"))

    assert after in wait_for(lambda: recorded(http, "stored"))  # later callbacks still run
    assert raising not in recorded(http, "stored")
    errors = wait_for(lambda: logged_errors(server, "OnStoredInstance"))
    assert len(errors) == 2
    assert all(error.endswith("OnStoredInstance failed on purpose") for error in errors)
    assert http.get(f"/instances/{raising}").status_code == 200
    assert http.get("/patients", params={"expand": ""}).status_code == 200


def test_an_on_stored_instance_that_loops_forever_is_stopped_within_the_limit(
    server: ServerProcess, http: httpx.Client, figures: Figures
) -> None:
    errors_before = len(logged_errors(server, "OnStoredInstance"))
    started = time.monotonic()
    looping = upload(http, dicom_variant(patient_id="LUA-LOOP", instance="811"))
    answered = time.monotonic() - started
    # While the callback loops: HTTP, C-STORE and uploads are served, the upload is stored.
    assert STOPPED not in server.log_path.read_text(errors="replace")
    assert http.get("/system").status_code == 200
    assert http.get(f"/instances/{looping}").status_code == 200
    assert (
        c_store_file(server, dicom_variant(patient_id="LUA-AFTER-LOOP", instance="812"), "LUAFAIL") == 0x0000
    )
    after = upload(http, dicom_variant(patient_id="LUA-AFTER-LOOP", instance="813"))
    served = time.monotonic() - started
    assert served < TIME_LIMIT, "requests waited for the looping callback"

    stored = wait_for(lambda: after in (ids := recorded(http, "stored")) and ids)
    freed = time.monotonic() - started
    assert TIME_LIMIT <= freed < TIME_LIMIT + SLACK
    assert looping not in stored
    assert logged_errors(server, "OnStoredInstance")[errors_before:] == [STOPPED]
    assert server.process is not None and server.process.poll() is None
    figures.add(
        "looping OnStoredInstance",
        f"upload answered in {answered:.2f} s, other requests served by {served:.2f} s, "
        f"main Lua state free again after {freed:.1f} s (LuaTimeLimit {TIME_LIMIT} s)",
    )


def test_stable_study_callbacks_that_fail_or_loop_do_not_hold_the_others(
    server: ServerProcess, http: httpx.Client
) -> None:
    suffixes = {"raise": "821", "loop": "822", "fine": "823"}  # the script looks at the study's UID
    studies = {
        kind: upload(
            http, dicom_variant(patient_id="LUA-STABLE-FAIL", study=suffix, series=suffix, instance=suffix)
        )
        for kind, suffix in suffixes.items()
    }
    parents = {kind: http.get(f"/instances/{rid}").json()["ParentSeries"] for kind, rid in studies.items()}
    study_ids = {
        kind: http.get(f"/series/{series}").json()["ParentStudy"] for kind, series in parents.items()
    }

    stable = wait_for(lambda: study_ids["fine"] in (ids := recorded(http, "stable")) and ids)
    assert study_ids["raise"] not in stable and study_ids["loop"] not in stable
    errors = wait_for(lambda: len(found := logged_errors(server, "OnStableStudy")) >= 2 and found)
    assert sorted(error == STOPPED for error in errors) == [False, True]
    assert next(error for error in errors if error != STOPPED).endswith("OnStableStudy failed on purpose")
    for kind, study in study_ids.items():
        assert http.get(f"/studies/{study}").json()["IsStable"], kind
    assert http.get("/system").status_code == 200


def test_a_stop_drops_the_queued_callbacks_and_runs_finalize(tmp_path: Path, figures: Figures) -> None:
    script = tmp_path / "backlog.lua"
    script.write_text(
        "function OnStoredInstance() while true do end end\nfunction Finalize() print('finalized') end\n"
    )
    options = {"LuaScripts": [str(script)], "LuaTimeLimit": TIME_LIMIT, "WorkerProcesses": 1}
    process = fastpacs_server(tmp_path, options).start()
    try:
        with httpx.Client(base_url=process.base_url, timeout=30) as http:
            for number in range(BACKLOG):
                upload(http, dicom_variant(patient_id="LUA-BACKLOG", instance=f"83{number}"))
        started = time.monotonic()
    finally:
        process.stop()
    stopped = time.monotonic() - started
    figures.add(
        "stop with looping callbacks queued",
        f"{BACKLOG} callbacks of up to {TIME_LIMIT} s queued: stopped in {stopped:.1f} s",
    )
    assert stopped < TIME_LIMIT + SLACK < SHUTDOWN_GRACE_SECONDS
    assert "Lua says: finalized" in process.log_path.read_text(errors="replace")
