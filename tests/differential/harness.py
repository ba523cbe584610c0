"""The differential harness: send the same request to fastpacs and to the reference Orthanc, compare.

A :class:`Call` is one named request. :meth:`Checker.compare` sends it to
both servers at once and compares the status code, a few headers and the body: JSON
bodies are parsed (Orthanc indents, fastpacs does not) and normalized (values
that legitimately vary, such as timestamps and FileUuid, become
placeholders once their format has been checked), other bodies are compared
byte for byte.

Every difference has a path: ``status``, ``header:<name>`` (``error-header:<name>``
when both servers answered an error), ``body`` for non-JSON bodies, or a JSON
path such as ``$.Changes[3].Date``. An object with an ``ID`` (a resource, an
upload answer) is named by it rather than by its position, in lists and at the
root (``$[fa558bce-...].MainDicomTags.PatientName``), so that one missing
element does not make every following one differ and the allow-list can name
a resource wherever it appears.

A difference fails the test unless ``allowlist.ALLOWED`` explains it. Those
listed in ``allowlist.KNOWN_BUGS`` are fastpacs bugs awaiting a fix: a test
that meets only those is reported as an expected failure with the bug's
description, once it has compared everything it set out to.

To cover a new capability: a module with ``pytestmark = pytest.mark.reference``
that uses the module-scoped ``pair`` fixture (or ``ServerPair.start`` with
other options), a table of calls (``get(name, path, **params)`` or
``Call(name, method, path, body=...)``) and, in each test::

    check = pair.checker()
    check.compare_all(calls)
    check.verdict()
"""

import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastpacs.testing import ServerProcess, fastpacs_server, orthanc_server
from tests.conftest import STABLE_WAIT
from tests.differential.allowlist import ALLOWED, KNOWN_BUGS

COMPARED_HEADERS = ("content-type", "allow", "www-authenticate")
TIMESTAMP_KEYS = frozenset({"LastUpdate", "Date", "ReceptionDate"})
TIMESTAMP = re.compile(r"^\d{8}T\d{6}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

KNOWN_BUGS_MET: set[tuple[str, str]] = set()
"""Entries of ``KNOWN_BUGS`` met during this session (the terminal summary lists the others)."""


@dataclass(frozen=True)
class Call:
    """One request of the differential table, named so that the allow-list can refer to it."""

    name: str
    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None
    compared_headers: tuple[str, ...] = COMPARED_HEADERS

    def __str__(self) -> str:
        return self.name


def get(name: str, path: str, **params: str) -> Call:
    return Call(name, "GET", path, params or None)


@dataclass
class Answer:
    """What one server answered: the body parsed as JSON when it is JSON."""

    status: int
    headers: httpx.Headers
    content: bytes
    json: Any = None
    is_json: bool = False

    @classmethod
    def of(cls, response: httpx.Response) -> "Answer":
        answer = cls(response.status_code, response.headers, response.content)
        if response.content[:1] in (b"{", b"[", b'"') or response.content.strip() in (b"null", b"true"):
            with contextlib.suppress(ValueError):
                answer.json, answer.is_json = response.json(), True
        return answer


@dataclass(frozen=True)
class Difference:
    path: str
    orthanc: Any
    fastpacs: Any

    def __str__(self) -> str:
        return f"{self.path}: Orthanc {self.orthanc!r:.300} ≠ fastpacs {self.fastpacs!r:.300}"


@dataclass
class Exchange:
    """A call and both answers."""

    call: Call
    orthanc: Answer
    fastpacs: Answer
    differences: list[Difference]


def normalize(document: Any, ports: dict[int, str]) -> Any:
    """Replace what legitimately varies between two servers by placeholders.

    A value is replaced only when it has the expected format, so that a
    malformed timestamp or UUID still shows up as a difference.
    """
    if isinstance(document, dict):
        normalized = {}
        for key, value in document.items():
            if key in TIMESTAMP_KEYS and isinstance(value, str) and TIMESTAMP.match(value):
                normalized[key] = "<timestamp>"
            elif key == "FileUuid" and isinstance(value, str) and UUID.match(value):
                normalized[key] = "<uuid>"
            elif key in ("HttpPort", "DicomPort") and value in ports:
                normalized[key] = ports[value]
            else:
                normalized[key] = normalize(value, ports)
        return normalized
    if isinstance(document, list):
        return [normalize(item, ports) for item in document]
    return document


def _resource_ids(items: list) -> list[str] | None:
    """The IDs of a list of objects, when each has a distinct ``ID`` (resources, not changes)."""
    ids = [item.get("ID") if isinstance(item, dict) else None for item in items]
    if all(isinstance(resource_id, str) for resource_id in ids) and len(set(ids)) == len(ids):
        return ids
    return None


def json_differences(orthanc: Any, fastpacs: Any, path: str = "$") -> Iterator[Difference]:
    """The places where two JSON documents differ, deepest first."""
    if isinstance(orthanc, dict) and isinstance(fastpacs, dict):
        for key in sorted(orthanc.keys() | fastpacs.keys()):
            yield from json_differences(
                orthanc.get(key, "<absent>"), fastpacs.get(key, "<absent>"), f"{path}.{key}"
            )
        return
    if isinstance(orthanc, list) and isinstance(fastpacs, list):
        ids_orthanc, ids_fastpacs = _resource_ids(orthanc), _resource_ids(fastpacs)
        if ids_orthanc is None or ids_fastpacs is None:
            yield from _positional_differences(orthanc, fastpacs, path)
            return
        if ids_orthanc != ids_fastpacs:
            yield Difference(f"{path}<IDs>", ids_orthanc, ids_fastpacs)
        fastpacs_by_id = dict(zip(ids_fastpacs, fastpacs, strict=True))
        for resource_id, item in zip(ids_orthanc, orthanc, strict=True):
            if resource_id in fastpacs_by_id:
                yield from json_differences(item, fastpacs_by_id[resource_id], f"{path}[{resource_id}]")
        return
    if orthanc != fastpacs or type(orthanc) is not type(fastpacs):
        yield Difference(path, orthanc, fastpacs)


def _positional_differences(orthanc: list, fastpacs: list, path: str) -> Iterator[Difference]:
    for index in range(max(len(orthanc), len(fastpacs))):
        left = orthanc[index] if index < len(orthanc) else "<absent>"
        right = fastpacs[index] if index < len(fastpacs) else "<absent>"
        yield from json_differences(left, right, f"{path}[{index}]")


def answer_differences(
    orthanc: Answer, fastpacs: Answer, call: Call, ports: tuple[dict, dict]
) -> list[Difference]:
    found = []
    if orthanc.status != fastpacs.status:
        found.append(Difference("status", orthanc.status, fastpacs.status))
    both_errors = orthanc.status >= 400 and fastpacs.status >= 400
    for name in call.compared_headers:
        left, right = orthanc.headers.get(name), fastpacs.headers.get(name)
        if left != right:
            prefix = "error-header" if both_errors else "header"
            found.append(Difference(f"{prefix}:{name}", left, right))
    if orthanc.is_json and fastpacs.is_json:
        left, right = normalize(orthanc.json, ports[0]), normalize(fastpacs.json, ports[1])
        root = f"$[{left['ID']}]" if isinstance(left, dict) and isinstance(left.get("ID"), str) else "$"
        found.extend(json_differences(left, right, root))
    elif orthanc.content != fastpacs.content:
        found.append(Difference("body", orthanc.content[:200], fastpacs.content[:200]))
    return found


@cache
def _pattern(glob: str) -> re.Pattern[str]:
    """``*`` matches anything; every other character stands for itself (``[`` included)."""
    return re.compile(".*".join(re.escape(part) for part in glob.split("*")), re.DOTALL)


def _listed(table: dict[tuple[str, str], str], call: Call, difference: Difference) -> tuple[str, str] | None:
    for key in table:
        name_glob, path_glob = key
        if _pattern(name_glob).fullmatch(call.name) and _pattern(path_glob).fullmatch(difference.path):
            return key
    return None


def _client(server: ServerProcess) -> httpx.Client:
    # Orthanc closes idle connections after a second; a fresh connection per request avoids races.
    return httpx.Client(
        base_url=server.base_url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
    )


@dataclass
class ServerPair:
    """The reference Orthanc and fastpacs, started with the same options on free ports."""

    orthanc: ServerProcess
    fastpacs: ServerProcess

    @classmethod
    def start(cls, directory: Path, options: dict[str, Any]) -> "ServerPair":
        orthanc = orthanc_server(directory / "orthanc", options).start()
        try:
            fastpacs = fastpacs_server(directory / "fastpacs", options).start()
        except BaseException:
            orthanc.stop()
            raise
        return cls(orthanc, fastpacs)

    def __post_init__(self) -> None:
        self.orthanc_client, self.fastpacs_client = _client(self.orthanc), _client(self.fastpacs)
        self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="differential")

    def stop(self) -> None:
        self.threads.shutdown()
        self.orthanc_client.close()
        self.fastpacs_client.close()
        self.orthanc.stop()
        self.fastpacs.stop()

    @property
    def _ports(self) -> tuple[dict[int, str], dict[int, str]]:
        return (
            {self.orthanc.http_port: "<http-port>", self.orthanc.dicom_port: "<dicom-port>"},
            {self.fastpacs.http_port: "<http-port>", self.fastpacs.dicom_port: "<dicom-port>"},
        )

    def send(self, call: Call) -> tuple[Answer, Answer]:
        """The same request to both servers at the same time, so that both see the same timeline."""
        orthanc, fastpacs = self.threads.map(
            lambda client: Answer.of(
                client.request(
                    call.method, call.path, params=call.params, content=call.body, headers=call.headers
                )
            ),
            (self.orthanc_client, self.fastpacs_client),
        )
        return orthanc, fastpacs

    def upload_all(self, files: dict[str, bytes]) -> dict[str, Any]:
        """Upload each file to both servers, which must store it and answer alike: Orthanc's answers."""
        answers = {}
        for name, data in files.items():
            orthanc, fastpacs = self.send(Call(f"upload {name}", "POST", "/instances", body=data))
            assert (orthanc.status, fastpacs.status) == (200, 200), name
            assert orthanc.json == fastpacs.json, name
            answers[name] = orthanc.json
        return answers

    def exchange(self, call: Call) -> Exchange:
        orthanc, fastpacs = self.send(call)
        return Exchange(call, orthanc, fastpacs, answer_differences(orthanc, fastpacs, call, self._ports))

    def orthanc_get(self, path: str, **params: str) -> Any:
        response = self.orthanc_client.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    def fastpacs_get(self, path: str, **params: str) -> Any:
        response = self.fastpacs_client.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    def wait_until_stable(self, timeout: float = STABLE_WAIT) -> None:
        """Wait until every patient, study and series is stable on both servers."""
        deadline = time.monotonic() + timeout
        for get_json in (self.orthanc_get, self.fastpacs_get):
            while not all(
                resource["IsStable"]
                for level in ("patients", "studies", "series")
                for resource in get_json(f"/{level}", expand="")
            ):
                if time.monotonic() > deadline:
                    raise AssertionError("resources did not become stable in time")
                time.sleep(0.2)

    def checker(self) -> "Checker":
        return Checker(self)


class Checker:
    """Compares calls and collects what differs; :meth:`verdict` ends the test with the result.

    Use one per test: compare every call, then call ``verdict()``, which fails
    on unexplained differences and reports known bugs as an expected failure.
    """

    def __init__(self, pair: ServerPair):
        self.pair = pair
        self.unexplained: list[str] = []
        self.known: dict[tuple[str, str], list[str]] = {}

    def compare(self, call: Call) -> Exchange:
        exchange = self.pair.exchange(call)
        self.record(call, exchange.differences)
        return exchange

    def compare_documents(self, name: str, orthanc: Any, fastpacs: Any) -> None:
        """Compare two JSON documents fetched or built by the test (a job's JSON: its ID differs)."""
        call = Call(name, "GET", "-")
        left = Answer(200, httpx.Headers(), b"", orthanc, True)
        right = Answer(200, httpx.Headers(), b"", fastpacs, True)
        self.record(call, answer_differences(left, right, call, ({}, {})))

    def record(self, call: Call, differences: list[Difference]) -> None:
        """Judge differences with the allow-list and the known bugs."""
        for difference in differences:
            if _listed(ALLOWED, call, difference) is not None:
                continue
            bug = _listed(KNOWN_BUGS, call, difference)
            if bug is not None:
                self.known.setdefault(bug, []).append(f"{call.name} {difference}")
                KNOWN_BUGS_MET.add(bug)
            else:
                self.unexplained.append(f"{call.name} ({call.method} {call.path}) {difference}")

    def compare_all(self, calls: Iterable[Call]) -> list[Exchange]:
        return [self.compare(call) for call in calls]

    def verdict(self) -> None:
        if self.unexplained:
            listing = "\n  ".join(self.unexplained[:200])
            more = f"\n  ... and {len(self.unexplained) - 200} more" if len(self.unexplained) > 200 else ""
            pytest.fail(
                f"{len(self.unexplained)} differences from Orthanc:\n  {listing}{more}", pytrace=False
            )
        if self.known:
            titles = "; ".join(KNOWN_BUGS[key].split(" — ")[0] for key in self.known)
            cases = " | ".join(case for found in self.known.values() for case in found)
            pytest.xfail(f"known fastpacs bugs: {titles} (seen: {cases})")
