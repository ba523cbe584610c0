"""Shared fixtures: real fastpacs servers started as subprocesses, pydicom's test files, figures."""

import asyncio
import hashlib
import io
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, build_context, build_role, evt
from pynetdicom._globals import APPLICATION_CONTEXT_NAME
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.net.scu import leave_answers_to_requests
from fastpacs.pool import tasks
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.ingest import IngestService
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import ServerProcess, fastpacs_server

T = TypeVar("T")

STABLE_WAIT = 60.0
"""Seconds a test lets resources take to be logged stable. StableAge is 1 to 3 s in the tests, but a
Stable* change waits on an index commit and its sync: with the soak test loading the machine and its
disk beside it, full runs saw 15 s (the fresh clone at fa35c58) and 20 s (CI of 1c144f6) go by."""


def pydicom_file(name: str) -> Path:
    """A file of pydicom's own test data (shipped with pydicom, never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is missing"
    return Path(path)


def dicom_variant(
    base: str = "CT_small.dcm",
    *,
    patient_id: str | None = None,
    study: str | None = None,
    series: str | None = None,
    instance: str | None = None,
) -> bytes:
    """A pydicom test file with other identifiers: ``study``/``series``/``instance`` suffix its UIDs."""
    dataset = pydicom.dcmread(pydicom_file(base), force=True)
    if patient_id is not None:
        dataset.PatientID = patient_id
    for keyword, suffix in (
        ("StudyInstanceUID", study),
        ("SeriesInstanceUID", series),
        ("SOPInstanceUID", instance),
    ):
        if suffix is not None:
            setattr(dataset, keyword, f"{getattr(dataset, keyword)}.{suffix}")
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def orthanc_id(*identifiers: str) -> str:
    """Orthanc's resource ID, computed independently of fastpacs: SHA-1 of the "|"-joined identifiers."""
    digest = hashlib.sha1("|".join(identifiers).encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def stored_blobs(storage: Path) -> dict[str, Path]:
    """The files of a fastpacs storage folder, by SHA-256 (their name)."""
    return {path.name: path for path in storage.glob("??/??/*") if path.is_file()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A fastpacs server shared by the tests of one module."""
    process = fastpacs_server(tmp_path_factory.mktemp("fastpacs"), {"StableAge": 1}).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


def wait_for(condition: Callable[[], T], timeout: float = 60.0) -> T:
    """The first true result of ``condition``, asked every 0.2 s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def c_store_file(server: ServerProcess, data: bytes, calling_aet: str) -> int:
    """C-STORE one file, in its own SOP class and transfer syntax, on an association of its own; the
    DIMSE status."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.aet)
    assert association.is_established
    leave_answers_to_requests(association)
    try:
        return association.send_c_store(dataset).Status
    finally:
        association.release()


def c_get_association(
    server: ServerProcess,
    calling_aet: str,
    on_store: Callable[[evt.Event], int],
    *,
    timeout: float | None = None,
    tls_args: tuple[Any, str | None] | None = None,
) -> Association:
    """An established association for C-GETs of CT instances: the Study Root model and CT Image
    Storage with the SCP role, whose C-STOREs go to ``on_store``."""
    ae = AE(ae_title=calling_aet)
    if timeout is not None:
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    association = ae.associate(
        "127.0.0.1",
        server.dicom_port,
        ae_title=server.aet,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
        tls_args=tls_args,
    )
    assert association.is_established
    return association


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One fastpacs server (StableAge 1) for the modules whose tests do not depend on what others store.

    Starting a server takes seconds; tests on it use their own identifiers
    (``dicom_variant``) and compare counts before and after, never absolute ones.
    """
    process = fastpacs_server(tmp_path_factory.mktemp("shared-fastpacs"), {"StableAge": 1}).start()
    yield process
    process.stop()


@pytest.fixture
def shared_client(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.base_url, timeout=60) as http:
        yield http


FIGURE = "figure"
"""Key of the figures in a test's ``user_properties``: they travel in its reports, also from xdist workers."""


def association_answer(server: ServerProcess, calling: str, called: str, abstract_syntax: str) -> Any:
    """The server's answer to an A-ASSOCIATE-RQ sent over a plain socket: the decoded A-ASSOCIATE-AC
    or A-ASSOCIATE-RJ PDU.

    pynetdicom's requestor cannot be trusted to tell a rejection from an abort: on a loaded machine
    it reports about one rejection in three as an abort, against the reference Orthanc as against
    fastpacs (the peer's close overtakes the A-ASSOCIATE-RJ in its upper layer). A test of what the
    server answers reads the answer itself.
    """
    request = A_ASSOCIATE()
    request.application_context_name = APPLICATION_CONTEXT_NAME
    request.calling_ae_title = calling
    request.called_ae_title = called
    maximum_length = MaximumLengthNotification()
    maximum_length.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    request.user_information = [maximum_length, implementation]
    context = build_context(abstract_syntax)
    context.context_id = 1
    request.presentation_context_definition_list = [context]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    with socket.create_connection(("127.0.0.1", server.dicom_port), timeout=30) as connection:
        connection.sendall(pdu.encode())
        header = _received(connection, 6)
        body = _received(connection, int.from_bytes(header[2:6], "big"))
    answer = {0x02: A_ASSOCIATE_AC, 0x03: A_ASSOCIATE_RJ}[header[0]]()
    answer.decode(header + body)
    return answer


def _received(connection: socket.socket, length: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk = connection.recv(length - len(data))
        assert chunk, "the server closed the connection before answering"
        data += chunk
    return data


@pytest.fixture
def index_writer(tmp_path: Path, store: BlobStore) -> Iterator[IndexWriter]:
    """A running index writer over a new database, for the blob store of the test module's
    ``store`` fixture (in-process tests of the ingest)."""
    database = Database(tmp_path / "index", map_size_gb=1)
    writer = IndexWriter(database, store)
    writer.start()
    yield writer
    writer.stop()
    database.close()


class InlinePool:
    """The worker pool's interface, each task run at once in the test's process (whose store the
    tasks use, as a worker uses its copy of the server's)."""

    def __init__(self, store: BlobStore, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setattr(tasks, "_storage", store)

    def submit(self, function: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """As the pool's: the task's failure comes with its future."""
        future = asyncio.get_running_loop().create_future()
        try:
            future.set_result(function(*args))
        except Exception as error:  # noqa: BLE001 - handed to the future, as the pool does
            future.set_exception(error)
        return future

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)


@pytest.fixture
def inline_ingest(
    store: BlobStore, index_writer: IndexWriter, monkeypatch: pytest.MonkeyPatch
) -> IngestService:
    """An ingest over the test module's ``store`` and a new index, its pool's tasks run in the test's
    process (:class:`InlinePool`)."""
    return IngestService(InlinePool(store, monkeypatch), index_writer, DefaultEncoding("Latin1"), 1 << 30)  # type: ignore[arg-type]


class Figures:
    """What a test measured (counts, rates, memory), listed in a "figures" section at the end of the run.

    CI runs pytest without ``-s``, which hides print(): the figures of the
    reliability tests are recorded here instead, so that every run shows them.
    """

    def __init__(self, properties: list[tuple[str, object]]):
        self._properties = properties

    def add(self, name: str, text: str) -> None:
        """Record the line ``name: text`` for this test."""
        self._properties.append((FIGURE, f"{name}: {text}"))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.user_properties)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The soak, the longest test by far, first: a parallel run (``-n 4``) then ends soonest."""
    items.sort(key=lambda item: item.path.name != "test_soak.py")


def reported_properties(terminalreporter: pytest.TerminalReporter, key: str) -> list[tuple[str, Any]]:
    """(test node ID, value) of every ``user_properties`` entry under ``key`` in this run's reports."""
    return [
        (report.nodeid, value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "teardown"
        for name, value in report.user_properties
        if name == key
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the recorded figures, under the name of the test that measured them.

    tests/differential/conftest.py has a hook of the same name (known bugs not met): pytest runs both.
    """
    recorded = reported_properties(terminalreporter, FIGURE)
    if not recorded:
        return
    terminalreporter.section("figures")
    current = None
    for test, line in recorded:
        if test != current:
            terminalreporter.write_line(test)
            current = test
        terminalreporter.write_line(f"  {line}")
