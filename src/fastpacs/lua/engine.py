"""The Lua engine of a server: the scripts of ``LuaScripts``, their callbacks, /tools/execute-script.

As in Orthanc 1.10.1 there are two Lua states, each with every script of
``LuaScripts`` loaded:

* the main state runs /tools/execute-script and the callbacks, so that they
  share their globals: ``OnStoredInstance``, ``OnStableSeries``,
  ``OnStableStudy``, ``OnStablePatient``, ``OnJobSubmitted``,
  ``OnJobSuccess``, ``OnJobFailure``, ``IncomingHttpRequestFilter``,
  ``Initialize``, ``Finalize`` and (Orthanc 1.11) ``OnHeartBeat`` every
  ``LuaHeartBeatPeriod`` seconds;
* the filter state runs ``ReceivedInstanceFilter``, called for every
  incoming instance before it is stored, whatever else the main state is
  busy with.

Events (stored instances, stable resources, jobs) are queued and handled in
order, after the fact: they never hold up an ingest. The two filters are
called synchronously: a ``false`` refuses the instance (REST answers 200 with
``"Status": "FilteredOut"``, C-STORE answers Success, as Orthanc) or the
HTTP request (an empty 403). A filter that fails, or answers anything but a
boolean, fails the request with Orthanc's 500 (2031, or 2034 "not a
predicate"). A callback may list job commands (``SendToModality``,
``Delete``...): they run afterwards in a ``SequenceOfOperations`` job
(:mod:`fastpacs.lua.operations`).

A callback is looked for when its event happens, as Orthanc does, so one
defined later through /tools/execute-script takes effect at once: the
engine notes which callbacks the main state defines after each run.
"""

import asyncio
import logging
import ssl
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.dicom.parse import InstanceSummary
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.updates import IngestOutcome
from fastpacs.lua.api import OrthancApi
from fastpacs.lua.operations import LuaOperations
from fastpacs.lua.rest import InProcessRest
from fastpacs.lua.runtime import LuaLimits, LuaStoppedError, LuaThread
from fastpacs.lua.values import LuaToJson, to_lua
from fastpacs.services.ingest import Origin

if TYPE_CHECKING:
    from fastpacs.services.registry import Services

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
MAIN_CALLBACKS = (
    "Initialize",
    "Finalize",
    "OnStoredInstance",
    "OnStableSeries",
    "OnStableStudy",
    "OnStablePatient",
    "OnJobSubmitted",
    "OnJobSuccess",
    "OnJobFailure",
    "OnHeartBeat",
    "IncomingHttpRequestFilter",
)
INSTANCE_FILTER = "ReceivedInstanceFilter"
STABLE_CALLBACKS = {
    Level.PATIENT: "OnStablePatient",
    Level.STUDY: "OnStableStudy",
    Level.SERIES: "OnStableSeries",
}
JOB_CALLBACKS = {"submitted": "OnJobSubmitted", "success": "OnJobSuccess", "failure": "OnJobFailure"}


def origin_json(origin: Origin) -> dict[str, str]:
    """Orthanc's description of where an instance came from (the ``origin`` argument of callbacks)."""
    if origin.kind == "RestApi":
        return {"RemoteIp": origin.remote_ip, "RequestOrigin": "RestApi", "Username": origin.http_username}
    if origin.kind == "DicomProtocol":
        return {
            "CalledAet": origin.called_aet,
            "RemoteAet": origin.remote_aet,
            "RemoteIp": origin.remote_ip,
            "RequestOrigin": "DicomProtocol",
        }
    return {"RequestOrigin": origin.kind}


def not_a_predicate(name: str) -> OrthancError:
    logger.error("Lua: %s() did not answer true or false", name)
    return OrthancError(ErrorCode.LUA_NOT_A_PREDICATE)


class LuaEngine:
    """Orthanc's Lua scripting, wired into the server's ingest, change log, jobs and HTTP."""

    def __init__(self, services: "Services"):
        self.services = services
        config = services.config
        self.config = config
        self.limits = LuaLimits(
            time_limit=config.lua_time_limit,
            memory_limit=config.lua_memory_limit * MEGABYTE,
            unsafe=config.lua_unsafe_libraries_enabled,
        )
        self.main = LuaThread("lua-main", self.limits)
        self.filters = LuaThread("lua-filters", self.limits)
        self.operations = LuaOperations(services, system_calls_allowed=self.limits.unsafe)
        self.rest: InProcessRest | None = None
        self.defined: frozenset[str] = frozenset()
        """The callbacks the main state defines, as of its last run."""
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()
        self._heartbeat: asyncio.Task | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Load the scripts in both states and listen to the server's events.

        A script that cannot be read or fails stops the start-up, as in Orthanc.
        """
        loop = asyncio.get_running_loop()
        self._http = httpx.AsyncClient(verify=await asyncio.to_thread(self._verify))  # reads CA files
        scripts = [await asyncio.to_thread(_read_script, path) for path in self.config.lua_scripts]
        for thread in (self.main, self.filters):
            thread.start()
            await thread.run(partial(self._load, thread, loop, scripts))
        self.defined = await self.main.run(self._main_callbacks)
        services = self.services
        if await self.filters.run(partial(self.filters.defines, INSTANCE_FILTER)):
            services.ingest.instance_filter = self.filter_instance
        services.ingest.stored_listeners.append(self._on_stored_instance)
        services.stability.listeners.append(self._on_stable_resource)
        services.jobs.listeners.append(self._on_job_event)
        if self.config.lua_heart_beat_period > 0:
            self._heartbeat = asyncio.create_task(self._beat(self.config.lua_heart_beat_period))

    def _verify(self) -> ssl.SSLContext | bool:
        """How Http* verify HTTPS servers: HttpsVerifyPeers, HttpsCACertificates (else the system CAs)."""
        if not self.config.https_verify_peers:
            return False
        return ssl.create_default_context(cafile=self.config.https_ca_certificates or None)

    def _load(
        self, thread: LuaThread, loop: asyncio.AbstractEventLoop, scripts: list[tuple[str, bytes]]
    ) -> None:
        OrthancApi(thread, loop, self.config, lambda: self.rest, self._http_client).install()
        for path, source in scripts:
            logger.info("Installing the Lua script from: %s", path)
            try:
                thread.execute(source)
            except OrthancError as error:
                raise RuntimeError(f"the Lua script {path} (LuaScripts) failed: {error.details}") from None

    def _http_client(self) -> httpx.AsyncClient:
        assert self._http is not None, "the Lua engine is not started"
        return self._http

    async def connect(self, rest: InProcessRest) -> None:
        """The REST API is ready: scripts may call it from now on; ``Initialize()`` runs."""
        self.rest = rest
        if "Initialize" in self.defined:
            await self._callback("Initialize", tuple)

    async def stop(self) -> None:
        """Drop the queued events, then ``Finalize()`` and stop the Lua threads.

        As in Orthanc, the callback running is let finish (within ``LuaTimeLimit``)
        and ``Finalize()`` comes right after it: a backlog of slow callbacks does
        not hold the shutdown.
        """
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for task in self._tasks:
            task.cancel()  # also cancels its work on the Lua thread unless it has begun
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if "Finalize" in self.defined:
            await self._callback("Finalize", tuple)
        for thread in (self.main, self.filters):
            await asyncio.to_thread(thread.stop)
        if self._http is not None:
            await self._http.aclose()

    # ------------------------------------------------------------------ /tools/execute-script

    async def execute(self, source: bytes) -> bytes:
        """Run a script in the main state; what it printed."""
        output, commands = await self.main.run(partial(self._run_main, lambda: self.main.execute(source)))
        await self._submit(commands)
        return output

    def _run_main(self, work: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
        """On the main thread: ``work`` with an empty ``_job``; its result and the commands it listed.

        The ``_job`` of a run this one is nested in (a script whose REST call runs a script) is kept.
        """
        thread = self.main
        enclosing = thread.globals[b"_job"]
        try:
            thread.call("_InitializeJob")
            result = work()
            commands = LuaToJson(thread.lua).convert(thread.call("_AccessJob")[0], keep_strings=True)
        finally:
            thread.globals[b"_job"] = enclosing
            self.defined = self._main_callbacks()
        return result, commands if isinstance(commands, list) else []

    def _main_callbacks(self) -> frozenset[str]:
        return frozenset(name for name in MAIN_CALLBACKS if self.main.defines(name))

    async def _submit(self, commands: list[dict[str, Any]]) -> None:
        job = self.operations.prepare(commands)
        if job is not None:
            await self.services.jobs.submit(job)

    # ------------------------------------------------------------------ events

    async def _callback(self, name: str, arguments: Callable[[], tuple[Any, ...]]) -> None:
        """Call a callback of the main state with JSON arguments; its failure is logged."""

        def call() -> tuple[Any, list[dict[str, Any]]]:
            lua = self.main.lua
            values = [to_lua(lua, value) for value in arguments()]
            return self._run_main(lambda: self.main.call(name, *values))

        try:
            _, commands = await self.main.run(call)
            await self._submit(commands)
        except OrthancError as error:
            logger.error("Lua: Error in %s(): %s", name, error.details or error)
        except LuaStoppedError:
            pass

    def _spawn(self, name: str, arguments: Callable[[], tuple[Any, ...]]) -> None:
        task = asyncio.create_task(self._callback(name, arguments), name=f"lua-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_stored_instance(self, outcome: IngestOutcome, summary: InstanceSummary, origin: Origin) -> None:
        if "OnStoredInstance" in self.defined:
            self._spawn(
                "OnStoredInstance",
                partial(self._stored_arguments, outcome.ids[Level.INSTANCE], summary, origin),
            )

    def _stored_arguments(self, rid: RawId, summary: InstanceSummary, origin: Origin) -> tuple[Any, ...]:
        tags = msgspec.json.decode(zlib.decompress(summary.tags.simplified))
        return format_id(rid), tags, self._metadata(Level.INSTANCE, rid), origin_json(origin)

    def _on_stable_resource(self, level: Level, rid: RawId) -> None:
        name = STABLE_CALLBACKS.get(level)
        if name in self.defined:
            self._spawn(name, partial(self._stable_arguments, level, rid))

    def _stable_arguments(self, level: Level, rid: RawId) -> tuple[Any, ...]:
        resource = self.services.resources.get(level, rid)
        tags = resource["MainDicomTags"] if resource is not None else {}
        return format_id(rid), tags, self._metadata(level, rid)

    def _metadata(self, level: Level, rid: RawId) -> dict[str, str]:
        entries = self.services.metadata.entries(level, rid) or {}
        return {name: entry.value for name, entry in entries.items()}

    def _on_job_event(self, event: str, job_id: str) -> None:
        name = JOB_CALLBACKS[event]
        if name in self.defined:
            self._spawn(name, lambda: (job_id,))

    async def _beat(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if "OnHeartBeat" in self.defined:
                await self._callback("OnHeartBeat", tuple)

    # ------------------------------------------------------------------ filters

    async def filter_instance(self, summary: InstanceSummary, origin: Origin) -> bool:
        """``ReceivedInstanceFilter(dicom, origin, info)``: whether to store an incoming instance."""

        def call() -> bool:
            lua = self.filters.lua
            tags = msgspec.json.decode(zlib.decompress(summary.tags.simplified))
            info = {
                "HasPixelData": summary.pixel_data_offset is not None,
                "TransferSyntaxUID": summary.transfer_syntax,
            }
            arguments = [to_lua(lua, value) for value in (tags, origin_json(origin), info)]
            return self._predicate(self.filters, INSTANCE_FILTER, arguments)

        return await self.filters.run(call)

    async def allow_http_request(
        self, method: str, uri: str, ip: str, username: str, headers: dict[str, str]
    ) -> bool:
        """``IncomingHttpRequestFilter(method, uri, ip, username, headers)``: whether to serve a request."""

        def call() -> bool:
            lua = self.main.lua
            arguments = [to_lua(lua, value) for value in (method, uri, ip, username, headers)]
            try:
                return self._predicate(self.main, "IncomingHttpRequestFilter", arguments)
            finally:
                self.defined = self._main_callbacks()

        return await self.main.run(call)

    @staticmethod
    def _predicate(thread: LuaThread, name: str, arguments: list[Any]) -> bool:
        results = thread.call(name, *arguments)
        answer = results[0] if results else None
        if not isinstance(answer, bool):
            raise not_a_predicate(name)
        return answer


def _read_script(path: str) -> tuple[str, bytes]:
    try:
        return path, Path(path).read_bytes()
    except OSError as error:
        raise RuntimeError(f"cannot read the Lua script {path} (LuaScripts): {error}") from error
