"""The functions Orthanc 1.10.1 gives Lua scripts, written in Python.

========================================  ===================================================
function                                  answer
========================================  ===================================================
``ParseJson(text)``                       the Lua value, ``nil`` if the text is not JSON
``DumpJson(value [, keepStrings])``       JSON text (see :mod:`fastpacs.lua.values`)
``GetOrthancConfiguration()``             the configuration, every option with its value
``RestApiGet(uri [, builtin [, hdrs]])``  the body, ``nil`` on an error status
``RestApiPost(uri, body [, ...])``        the body, ``nil`` on an error status
``RestApiPut(uri, body [, ...])``         the body, ``nil`` on an error status
``RestApiDelete(uri [, ...])``            ``true``, ``nil`` on an error status
``HttpGet(url [, headers])``              the body; ``""`` on an error status, ``nil`` when
                                          the server cannot be reached
``HttpPost(url [, body [, headers]])``    as HttpGet
``HttpPut(url [, body [, headers]])``     as HttpGet
``HttpDelete(url [, headers])``           ``"SUCCESS"``, ``nil`` on any failure
``SetHttpCredentials(user, password)``    HTTP Basic credentials of the later Http* calls
``SetHttpTimeout(seconds)``               timeout of the later Http* calls (Orthanc 1.11)
========================================  ===================================================

As in Orthanc, a call with the wrong number or types of arguments logs
"Lua: Bad parameters to X()" and returns nothing. ``builtin`` chooses, in
Orthanc, between its own routes and those of plugins; fastpacs has no
plugins, so both reach the same routes. The REST calls are answered in this
process (:mod:`fastpacs.lua.rest`); the Lua thread waits for them while the
event loop works, serving nested Lua work meanwhile.
"""

import asyncio
import base64
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import msgspec
from lupa import lua53

from fastpacs.config import Config
from fastpacs.lua.rest import InProcessRest
from fastpacs.lua.runtime import LuaThread
from fastpacs.lua.values import ConversionError, LuaToJson, dump_json, parse_json, to_lua

logger = logging.getLogger(__name__)

LIBCURL_CONTENT_TYPE = "application/x-www-form-urlencoded"
"""What Orthanc's HTTP client (libcurl) labels the bodies of HttpPost and HttpPut with."""


def _bad_parameters(function: str) -> None:
    logger.error("Lua: Bad parameters to %s()", function)


def _is_string(value: Any) -> bool:
    return isinstance(value, bytes)


def _is_table(value: Any) -> bool:
    return lua53.lua_type(value) == "table"


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


class OrthancApi:
    """Orthanc's Lua functions for one Lua state: registered as globals by :meth:`install`.

    Created, installed and called on the Lua thread of that state.
    """

    def __init__(
        self,
        thread: LuaThread,
        loop: asyncio.AbstractEventLoop,
        config: Config,
        rest: Callable[[], InProcessRest | None],
        http: Callable[[], httpx.AsyncClient],
    ):
        self.thread = thread
        self.loop = loop
        self.config = config
        self.rest = rest
        self.http = http
        self.credentials: tuple[str, str] | None = None
        self.http_timeout = float(config.http_timeout)
        self.json = LuaToJson(thread.lua)

    def install(self) -> None:
        """Register the functions in the Lua state (on its thread).

        Each is wrapped in a Lua closure, so that scripts only ever hold Lua functions.
        """
        wrap = self.thread.lua.eval("function(f) return function(...) return f(...) end end")
        functions = {
            "ParseJson": self.parse_json,
            "DumpJson": self.dump_json,
            "GetOrthancConfiguration": self.get_orthanc_configuration,
            "RestApiGet": self.rest_api_get,
            "RestApiPost": self.rest_api_post,
            "RestApiPut": self.rest_api_put,
            "RestApiDelete": self.rest_api_delete,
            "HttpGet": self.http_get,
            "HttpPost": self.http_post,
            "HttpPut": self.http_put,
            "HttpDelete": self.http_delete,
            "SetHttpCredentials": self.set_http_credentials,
            "SetHttpTimeout": self.set_http_timeout,
        }
        for name, function in functions.items():
            self.thread.globals[name.encode()] = wrap(function)

    def _await(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.thread.wait(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    # ------------------------------------------------------------------ JSON

    def parse_json(self, *arguments: Any) -> Any:
        if len(arguments) != 1 or not isinstance(arguments[0], bytes | int | float):
            return _bad_parameters("ParseJson")
        text = arguments[0]
        if not isinstance(text, bytes):
            text = self.json.tostring(text)
        return parse_json(self.thread.lua, text)

    def dump_json(self, *arguments: Any) -> bytes | None:
        if len(arguments) not in (1, 2):
            return _bad_parameters("DumpJson")
        keep_strings = len(arguments) == 2 and bool(arguments[1])
        try:
            document = self.json.convert(arguments[0], keep_strings)
        except ConversionError as error:
            raise ConversionError(f"DumpJson(): {error}") from None
        return dump_json(document).encode()

    def get_orthanc_configuration(self, *arguments: Any) -> Any:
        if arguments:
            return _bad_parameters("GetOrthancConfiguration")
        return to_lua(self.thread.lua, msgspec.to_builtins(self.config))

    # ------------------------------------------------------------------ REST API

    def _headers(self, value: Any) -> dict[str, str] | None:
        """A Lua table of HTTP headers; ``None`` if it is not one."""
        if not _is_table(value):
            return None
        headers = {}
        for name, item in value.items():
            if not _is_string(name) or not isinstance(item, bytes | int | float):
                return None
            headers[_text(name)] = _text(item if isinstance(item, bytes) else self.json.tostring(item))
        return headers

    def _rest_options(self, options: tuple[Any, ...]) -> dict[str, str] | None:
        """``[builtin [, headers]]``: the headers, ``None`` when the options are malformed."""
        if len(options) > 2 or (options and not isinstance(options[0], bool)):
            return None
        if len(options) == 2:
            return self._headers(options[1])
        return {}

    def _rest(self, function: str, method: str, uri: Any, body: bytes, options: tuple[Any, ...]) -> Any:
        headers = self._rest_options(options)
        if not _is_string(uri) or headers is None:
            return _bad_parameters(function)
        rest = self.rest()
        if rest is None:
            logger.error("Lua: The Orthanc API is unavailable")
            return None
        answer = self._await(rest.request(method, _text(uri), body, headers))
        if not answer.ok:
            logger.error("Lua: Error in %s() for URI: %s", function, _text(uri))
            return None
        return True if method == "DELETE" else answer.body

    def rest_api_get(self, uri: Any = None, *options: Any) -> bytes | None:
        return self._rest("RestApiGet", "GET", uri, b"", options)

    def rest_api_post(self, uri: Any = None, body: Any = None, *options: Any) -> bytes | None:
        if not _is_string(body):
            return _bad_parameters("RestApiPost")
        return self._rest("RestApiPost", "POST", uri, body, options)

    def rest_api_put(self, uri: Any = None, body: Any = None, *options: Any) -> bytes | None:
        if not _is_string(body):
            return _bad_parameters("RestApiPut")
        return self._rest("RestApiPut", "PUT", uri, body, options)

    def rest_api_delete(self, uri: Any = None, *options: Any) -> bool | None:
        return self._rest("RestApiDelete", "DELETE", uri, b"", options)

    # ------------------------------------------------------------------ HTTP client

    def set_http_credentials(self, *arguments: Any) -> None:
        if len(arguments) != 2 or not all(_is_string(argument) for argument in arguments):
            return _bad_parameters("SetHttpCredentials")
        self.credentials = (_text(arguments[0]), _text(arguments[1]))
        return None

    def set_http_timeout(self, *arguments: Any) -> None:
        if len(arguments) != 1 or not isinstance(arguments[0], int | float) or arguments[0] < 0:
            return _bad_parameters("SetHttpTimeout")
        self.http_timeout = float(arguments[0])
        return None

    def _http(self, function: str, method: str, url: Any, body: Any, headers: Any) -> httpx.Response | None:
        extra = {} if headers is None else self._headers(headers)
        if not _is_string(url) or extra is None or not (body is None or _is_string(body)):
            _bad_parameters(function)
            return None
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            extra["Authorization"] = f"Basic {token}"
        if method in ("POST", "PUT"):
            extra.setdefault("Content-Type", LIBCURL_CONTENT_TYPE)
        request = self.http().request(
            method,
            _text(url),
            content=body or b"",
            headers=extra,
            timeout=self.http_timeout or None,
        )
        try:
            return self._await(request)
        except httpx.HTTPError as error:
            logger.error("Lua: Error in %s() for URL %s: %s", function, _text(url), error)
            return None

    def _body(self, function: str, method: str, url: Any, body: Any, headers: Any) -> bytes | None:
        response = self._http(function, method, url, body, headers)
        if response is None:
            return None
        return response.content if response.is_success else b""

    def http_get(self, url: Any = None, headers: Any = None, *extra: Any) -> bytes | None:
        if extra:
            return _bad_parameters("HttpGet")
        return self._body("HttpGet", "GET", url, None, headers)

    def http_post(self, url: Any = None, body: Any = None, headers: Any = None, *extra: Any) -> bytes | None:
        if extra:
            return _bad_parameters("HttpPost")
        return self._body("HttpPost", "POST", url, body, headers)

    def http_put(self, url: Any = None, body: Any = None, headers: Any = None, *extra: Any) -> bytes | None:
        if extra:
            return _bad_parameters("HttpPut")
        return self._body("HttpPut", "PUT", url, body, headers)

    def http_delete(self, url: Any = None, headers: Any = None, *extra: Any) -> bytes | None:
        if extra:
            return _bad_parameters("HttpDelete")
        response = self._http("HttpDelete", "DELETE", url, None, headers)
        return b"SUCCESS" if response is not None and response.is_success else None
