"""One Lua state and the thread that runs it: the sandbox, the time limit, print().

A :class:`LuaThread` owns a Lua 5.3 state (Orthanc 1.10.1's Lua version,
through lupa) and is the only thread that touches it, so the event loop never
runs Lua. Work is submitted as Python callables (:meth:`LuaThread.submit`)
and runs one at a time, in order.

Each script run (:meth:`LuaThread.execute`) or function call
(:meth:`LuaThread.call`) gets the configured time limit. A count hook asks
every :data:`INSTRUCTIONS_PER_CHECK` instructions whether the run is over its
time and, if so, raises an error the script cannot catch; the run then fails
with Orthanc's "Cannot execute a Lua command" (2031) and a detail naming the
limit. Time spent waiting for Orthanc's API (a REST call, an HTTP request)
does not count: it is bounded by that call. A memory limit (lupa's
allocator) stops a script that would exhaust the server's memory.

While a Lua function waits for the event loop (:meth:`LuaThread.wait`),
the thread goes on serving submitted work, nested in the waiting call: a
script whose REST call needs Lua again (an upload through a
``ReceivedInstanceFilter``, a request through the HTTP filter) does not wait
for itself. Orthanc gets the same effect from a recursive mutex.

Known limit: a single call into Lua's C library that runs for long without
executing Lua instructions (a pathological ``string.find`` pattern on a huge
string) is not interrupted; the HTTP and DICOM servers stay responsive, but
later Lua work waits for it.
"""

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

from lupa import lua53

from fastpacs.errors import ErrorCode, OrthancError

logger = logging.getLogger(__name__)

T = TypeVar("T")

INSTRUCTIONS_PER_CHECK = 10_000
"""Lua instructions between two looks at the clock (≈ 0.1 ms of Lua; costs about 1 %)."""
PRELUDE = resources.files("fastpacs.lua").joinpath("prelude.lua").read_bytes()
_WAKE_UP = object()
"""Queued when work the Lua thread waits for is done, so that it stops serving nested work."""


@dataclass(frozen=True)
class LuaLimits:
    """What a script may use: ``LuaTimeLimit``, ``LuaMemoryLimit`` and ``LuaUnsafeLibrariesEnabled``."""

    time_limit: float = 10.0
    """Seconds of Lua execution per run or callback; 0: no limit."""
    memory_limit: int = 0
    """Bytes the Lua state may allocate; 0: no limit."""
    unsafe: bool = False
    """Give scripts io, os, require, loadfile, dofile and debug (as Orthanc does)."""


def script_error(details: str) -> OrthancError:
    return OrthancError(ErrorCode.CANNOT_EXECUTE_LUA, details)


def _deny_attributes(_obj: Any, name: Any, _is_setting: bool) -> str:
    """Lua never reaches the attributes of Python objects (a function's ``__globals__``...)."""
    raise AttributeError(f"Python attribute {name!r} is not accessible from Lua")


class _Work:
    __slots__ = ("function", "future")

    def __init__(self, function: Callable[[], Any]):
        self.function = function
        self.future: concurrent.futures.Future = concurrent.futures.Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.function()
        except BaseException as error:  # noqa: BLE001 - handed to whoever awaits the work
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


class LuaStoppedError(RuntimeError):
    """Work submitted to a Lua thread that stopped (server shutting down)."""


class LuaThread:
    """A Lua state, its thread, and the runs of scripts and functions in it."""

    def __init__(self, name: str, limits: LuaLimits):
        self.name = name
        self.limits = limits
        self._jobs: queue.SimpleQueue[_Work | object | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._deadlines: list[float] = []
        """The time limit of each run in progress, the innermost (nested) last."""
        self._outputs: list[list[bytes] | None] = []
        """Where print() writes for each run in progress (``None``: the log only)."""
        self._stopped = False

    def _create_state(self) -> None:
        """The Lua state with the prelude run in it (on the Lua thread, first of all)."""
        self.lua = lua53.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            attribute_filter=_deny_attributes,
            max_memory=self.limits.memory_limit or None,
        )
        python = self.lua.table_from({b"expired": self._expired, b"emit": self._emit})
        settings = self.lua.table_from(
            {b"instructions_per_check": INSTRUCTIONS_PER_CHECK, b"unsafe": self.limits.unsafe}
        )
        self._run, self._compile = self.lua.execute(PRELUDE, python, settings, name="=prelude", mode="t")
        self._tostring = self.lua.eval("tostring")
        self.globals = self.lua.globals()

    # ------------------------------------------------------------------ from any thread

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the queued work, then stop (a run stuck in C code is left to the daemon thread)."""
        self._stopped = True
        self._jobs.put(None)
        self._thread.join(timeout)

    def submit(self, function: Callable[[], T]) -> "concurrent.futures.Future[T]":
        """Run ``function`` on the Lua thread, after the work submitted before it."""
        if self._stopped:
            raise LuaStoppedError(f"{self.name} is stopped")
        work = _Work(function)
        self._jobs.put(work)
        return work.future

    async def run(self, function: Callable[[], T]) -> T:
        """:meth:`submit` and await the result, from the event loop."""
        return await asyncio.wrap_future(self.submit(function))

    # ------------------------------------------------------------------ on the Lua thread

    def _serve(self) -> None:
        self._create_state()
        while (work := self._jobs.get()) is not None:
            if isinstance(work, _Work):
                work.run()

    def wait(self, future: concurrent.futures.Future) -> Any:
        """The result of work done elsewhere (on the event loop), serving nested Lua work meanwhile.

        The time spent here does not count against the time limit of the run in progress.
        """
        started = time.monotonic()
        future.add_done_callback(lambda _: self._jobs.put(_WAKE_UP))
        try:
            while not future.done():
                work = self._jobs.get()
                if work is None:  # stopping: let _serve see it too
                    self._jobs.put(None)
                    future.cancel()
                    raise LuaStoppedError(f"{self.name} is stopping")
                if isinstance(work, _Work):
                    work.run()
            return future.result()
        finally:
            if self._deadlines:
                self._deadlines[-1] += time.monotonic() - started

    def execute(self, source: bytes) -> bytes:
        """Run a script (a LuaScripts file, a /tools/execute-script body); return what it printed."""
        chunk = self._compile(source)
        if isinstance(chunk, tuple):  # nil and the syntax error
            raise script_error(self._text(chunk[1]))
        output: list[bytes] = []
        self._call(chunk, (), output)
        return b"".join(line + b"\n" for line in output)

    def defines(self, name: str) -> bool:
        """Whether the scripts define a global function of that name."""
        return lua53.lua_type(self.globals[name.encode()]) == "function"

    def call(self, name: str, *arguments: Any) -> tuple[Any, ...]:
        """Call a global Lua function (its prints go to the log); its results."""
        function = self.globals[name.encode()]
        if lua53.lua_type(function) != "function":
            raise script_error(f"The Lua function {name}() is not defined")
        return self._call(function, arguments, None)

    def _call(self, function: Any, arguments: tuple[Any, ...], output: list[bytes] | None) -> tuple[Any, ...]:
        with self._limited(output):
            try:
                results = self._run(function, *arguments)
            except lua53.LuaError as error:  # raised outside the script's protected call (out of memory)
                raise script_error(str(error) or type(error).__name__) from error
            if not isinstance(results, tuple):
                results = (results,)
            if not results[0] and self._expired():
                raise script_error(
                    f"The Lua script was stopped after {self.limits.time_limit:g} seconds (LuaTimeLimit)"
                )
        if not results[0]:
            raise script_error(self._text(results[1] if len(results) > 1 else None))
        return results[1:]

    @contextmanager
    def _limited(self, output: list[bytes] | None):
        limit = self.limits.time_limit
        self._deadlines.append(time.monotonic() + limit if limit > 0 else math.inf)
        self._outputs.append(output)
        try:
            yield
        finally:
            self._deadlines.pop()
            self._outputs.pop()

    def _expired(self) -> bool:
        return bool(self._deadlines) and time.monotonic() > self._deadlines[-1]

    def _emit(self, line: bytes) -> None:
        logger.warning("Lua says: %s", line.decode("utf-8", errors="replace"))
        output = self._outputs[-1] if self._outputs else None
        if output is not None:
            output.append(line)

    def _text(self, value: Any) -> str:
        if value is None:
            return "unknown error"
        text = value if isinstance(value, bytes) else self._tostring(value)
        return text.decode("utf-8", errors="replace")
