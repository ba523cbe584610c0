"""Sending compressed and unusual transfer syntaxes over the DICOM network, fastpacs against Orthanc 1.10.1.

One file per transfer syntax (JPEG baseline and extended, JPEG lossless,
JPEG-LS, JPEG 2000, RLE, Deflated and Big Endian, Explicit VR Little Endian)
is stored on both servers, then sent to storage SCPs run by the test (pynetdicom),
each accepting a chosen set of transfer syntaxes for every storage SOP class
(:data:`PROFILES`): everything, the uncompressed Little Endian syntaxes, Implicit
VR Little Endian only, Explicit VR Big Endian only, nothing. Each is a modality
of both servers, with AllowTranscoding (the default) and without (``...nt``).

Compared, for each file and peer: the answer of a synchronous
``/modalities/{id}/store``, the job of an asynchronous one, the final status of
a C-MOVE to the peer, the final status of a C-GET by a peer proposing those
transfer syntaxes, and what arrived each time (transfer syntax, SOP Instance
UID, photometric interpretation, pixel data decoded by pydicom). Whatever
Orthanc does, what fastpacs sends must decode to the original pixels
(:func:`_check_pixels`): lossless syntaxes exactly, lossy JPEG within the
rounding by which two JPEG decoders may differ.

A second pair of servers is configured with ``DicomScuPreferredTransferSyntax``
Implicit VR Little Endian (:func:`test_preferred_transfer_syntax`); what a
compressed preferred syntax does is checked on fastpacs alone (Orthanc 1.10.1
encodes neither RLE nor JPEG 2000).

C-MOVE and C-GET results are compared by the category of the final status and
the count of completed sub-operations: when sub-operations fail, fastpacs
(pynetdicom) answers 0xA702 with the count of failed ones, Orthanc 0xC000 with
zero counts for C-MOVE; a destination refusing every presentation context is
0xA801 for pynetdicom's C-MOVE SCP. Both are failures to the requestor.
"""

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.net.scu import TRANSCODING_TARGETS, StoredInstance, TranscodingError, dataset_to_send
from fastpacs.testing import free_port
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import test_file
from tests.differential.harness import Answer, Call, Checker, ServerPair, answer_differences

FILES = (
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL colour
    "JPGExtended.dcm",  # JPEG extended, 12 bits
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless (process 14, SV1), RGB
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless, 16 bits
    "JPEG2000.dcm",  # JPEG 2000
    "SC_rgb_rle_2frame.dcm",  # RLE lossless, 2 frames, RGB
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian, 16 bits
    "CT_small.dcm",  # Explicit VR Little Endian
)
PROFILES: dict[str, list[str]] = {
    "all": list(AllTransferSyntaxes),
    "unc": [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
    "impl": [ImplicitVRLittleEndian],
    "be": [ExplicitVRBigEndian],
    "none": [],
}
"""The transfer syntaxes each peer accepts for every storage SOP class."""
STORE_PEERS = ("all", "unc", "impl", "be", "uncnt", "implnt", "bent")
"""Modalities stored to synchronously: a profile, ``nt`` for the same peer without AllowTranscoding
(the peer accepting nothing has its own test)."""
JOB_PEERS = ("unc", "implnt")
MOVED_LESS = ("JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm")
"""Files the C-MOVE and C-GET tests leave to the JPEG baseline one (the runtime), the C-STORE SCU
covering them."""
MOVE_PEERS = ("unc", "be", "none", "uncnt")
GET_PEERS = ("all", "impl", "be", "implnt")
LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})
MOVER = "MOVER"
GETTER = "GETTER"
FINAL_STATUS = {0x0000: "Success", 0xFE00: "Cancel"}
PIXEL_DATA = 0x7FE00010


class Arrivals:
    """What the test's storage SCPs received (the test sends one request at a time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, Dataset]] = []

    def on_c_store(self, event: evt.Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self.lock:
            self.received.append((str(event.context.transfer_syntax), dataset))
        return 0x0000

    def take(self) -> list[tuple[str, Dataset]]:
        """What arrived since the last call (a C-STORE is recorded before it is answered)."""
        with self.lock:
            received, self.received = self.received, []
        return received


@pytest.fixture(scope="module")
def arrivals() -> Arrivals:
    return Arrivals()


@pytest.fixture(scope="module")
def peer_modalities(arrivals: Arrivals) -> Iterator[dict[str, dict[str, Any]]]:
    """One storage SCP per profile, as modalities ``{profile}`` and ``{profile}nt`` (no AllowTranscoding),
    and the C-MOVE and C-GET requestors of the test."""
    servers = []
    modalities: dict[str, dict[str, Any]] = {
        "mover": {"AET": MOVER, "Host": "127.0.0.1", "Port": 104},
        "getter": {"AET": GETTER, "Host": "127.0.0.1", "Port": 104},
        "getternt": {"AET": GETTER + "NT", "Host": "127.0.0.1", "Port": 104, "AllowTranscoding": False},
    }
    for profile, syntaxes in PROFILES.items():
        ae = AE(ae_title=profile.upper())
        ae.maximum_associations = 50
        for context in StoragePresentationContexts if syntaxes else ():
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        port = free_port()
        handlers = [(evt.EVT_C_STORE, arrivals.on_c_store)]
        servers.append(ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers))
        base = {"Host": "127.0.0.1", "Port": port}
        modalities[profile] = {"AET": profile.upper(), **base}
        modalities[f"{profile}nt"] = {"AET": f"{profile.upper()}NT", **base, "AllowTranscoding": False}
    yield modalities
    for server in servers:
        server.shutdown()


def _register(pair: ServerPair, modalities: dict[str, dict[str, Any]]) -> None:
    for client in (pair.orthanc_client, pair.fastpacs_client):
        for name, body in modalities.items():
            assert client.put(f"/modalities/{name}", json=body).status_code == 200


@pytest.fixture(scope="module")
def peers(pair: ServerPair, peer_modalities: dict[str, dict[str, Any]]) -> None:
    _register(pair, peer_modalities)


class Stored:
    """A file stored on both servers."""

    def __init__(self, name: str, pair: ServerPair):
        self.name = name
        self.data = test_file(name).read_bytes()
        self.original = dcmread(test_file(name))
        self.pixels = self.original.pixel_array
        self.ids = []
        for client in (pair.orthanc_client, pair.fastpacs_client):
            answer = client.post("/instances", content=self.data)
            assert answer.status_code == 200, answer.text
            self.ids.append(answer.json()["ID"])
        assert self.ids[0] == self.ids[1]

    @property
    def id(self) -> str:
        return self.ids[0]

    @property
    def transfer_syntax(self) -> str:
        return str(self.original.file_meta.TransferSyntaxUID)


@pytest.fixture(params=FILES)
def stored(request: pytest.FixtureRequest, pair: ServerPair, peers: None) -> Iterator[Stored]:
    """One file at a time: several share their SOP Instance UID (pydicom's variants of MR_small...)."""
    stored = Stored(request.param, pair)
    yield stored
    for client in (pair.orthanc_client, pair.fastpacs_client):
        client.delete(f"/instances/{stored.id}")


def _pixels_verdict(stored: Stored, dataset: Dataset) -> str:
    """Whether the pixels that arrived decode to the original's."""
    try:
        pixels = dataset.pixel_array
    except (ValueError, NotImplementedError, RuntimeError, AttributeError) as error:
        return f"cannot be decoded: {error}"
    if pixels.shape != stored.pixels.shape:
        return f"shape {pixels.shape} instead of {stored.pixels.shape}"
    difference = numpy.abs(pixels.astype(numpy.int64) - stored.pixels.astype(numpy.int64)).max()
    # Lossy JPEG decoders may round differently (Orthanc's DCMTK and pydicom's differ by 1).
    tolerance = 1 if stored.transfer_syntax in LOSSY else 0
    return "as the original" if difference <= tolerance else f"differ by up to {difference}"


def _changed_attributes(stored: Stored, dataset: Dataset) -> dict[str, str]:
    """The attributes (but the pixel data) that arrived different from the original's, or were added
    or removed: what the transcoding changed besides the encoding."""
    changed = {}
    for tag in sorted(set(stored.original.keys()) | set(dataset.keys())):
        if tag == PIXEL_DATA:
            continue
        before, after = stored.original.get(tag), dataset.get(tag)
        if before is None or after is None or before.value != after.value:
            changed[str(tag)] = "<absent>" if after is None else f"{after.value!r:.80}"
    return changed


def _arrivals_document(stored: Stored, received: list[tuple[str, Dataset]]) -> list[dict[str, Any]]:
    return [
        {
            "TransferSyntax": UID(syntax).name,
            "SOPInstanceUID": str(dataset.SOPInstanceUID),
            "Changed": _changed_attributes(stored, dataset),
            "Pixels": _pixels_verdict(stored, dataset),
        }
        for syntax, dataset in received
    ]


def _check_pixels(name: str, document: list[dict[str, Any]]) -> None:
    """What fastpacs sent must decode to the original pixels, whatever Orthanc does."""
    for arrival in document:
        assert arrival["Pixels"] == "as the original", f"{name}: {arrival}"


def _compare_arrivals(checker: Checker, stored: Stored, name: str, orthanc: list, fastpacs: list) -> None:
    documents = [_arrivals_document(stored, received) for received in (orthanc, fastpacs)]
    _check_pixels(name, documents[1])
    checker.compare_documents(f"arrivals {name}", *documents)


def _on_both(pair: ServerPair, arrivals: Arrivals, request: Any) -> tuple[tuple[Any, Any], tuple[list, list]]:
    """``request(client_index)`` on Orthanc (0) then fastpacs (1), with what arrived each time."""
    results, received = [], []
    for index in (0, 1):
        results.append(request(index))
        received.append(arrivals.take())
    return (results[0], results[1]), (received[0], received[1])


# --- C-STORE SCU: /modalities/{id}/store ---------------------------------------------------------------


@pytest.mark.reference
def test_store(pair: ServerPair, arrivals: Arrivals, stored: Stored) -> None:
    _compare_stores(pair, arrivals, stored, STORE_PEERS, JOB_PEERS)


@pytest.mark.reference
@pytest.mark.parametrize("stored", ["CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"], indirect=True)
def test_store_to_a_peer_accepting_nothing(pair: ServerPair, arrivals: Arrivals, stored: Stored) -> None:
    """The association is refused for want of a presentation context: the same Details as Orthanc's."""
    _compare_stores(pair, arrivals, stored, ("none",), ("none",))


def _compare_stores(
    pair: ServerPair, arrivals: Arrivals, stored: Stored, peers: tuple[str, ...], job_peers: tuple[str, ...]
) -> None:
    """Synchronous stores to each of ``peers``, asynchronous ones to each of ``job_peers``."""
    checker = pair.checker()
    clients = (pair.orthanc_client, pair.fastpacs_client)
    for peer in peers:
        _compare_synchronous_store(checker, arrivals, stored, peer, f"store {stored.name} to {peer}")
    for peer in job_peers:
        name = f"store-job {stored.name} to {peer}"
        body = {"Resources": [stored.id], "Asynchronous": True}
        path = f"/modalities/{peer}/store"
        jobs, received = _on_both(
            pair, arrivals, lambda index, path=path, body=body: _finished_job(clients[index], path, body)
        )
        checker.compare_documents(name, *jobs)
        _compare_arrivals(checker, stored, name, *received)
    checker.verdict()


def _compare_synchronous_store(
    checker: Checker, arrivals: Arrivals, stored: Stored, peer: str, name: str
) -> None:
    """A synchronous store of ``stored`` to ``peer`` by both servers: the answers and what arrived."""
    pair = checker.pair
    clients = (pair.orthanc_client, pair.fastpacs_client)
    call = Call(name, "POST", f"/modalities/{peer}/store")
    body = {"Resources": [stored.id], "Synchronous": True}
    answers, received = _on_both(
        pair, arrivals, lambda index: Answer.of(clients[index].post(call.path, json=body))
    )
    checker.record(call, answer_differences(*answers, call, ({}, {})))
    _compare_arrivals(checker, stored, name, *received)


@pytest.mark.reference
@pytest.mark.parametrize(
    "stored",
    ["SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "CT_small.dcm"],
    indirect=True,
)
def test_store_straight(pair: ServerPair, arrivals: Arrivals, stored: Stored) -> None:
    """``/modalities/{id}/store-straight`` of the file. Orthanc 1.10.1 does not transcode there (it fails
    with 'No valid presentation context was negotiated...' when the peer does not accept the file as
    it is); fastpacs transcodes as for ``/store``: it must then answer the success and send the original
    pixels in a syntax the peer accepts. Everything else is compared."""
    checker = pair.checker()
    clients = (pair.orthanc_client, pair.fastpacs_client)
    for peer in ("unc", "be"):
        name = f"store-straight {stored.name} to {peer}"
        call = Call(name, "POST", f"/modalities/{peer}/store-straight")
        answers, received = _on_both(
            pair,
            arrivals,
            lambda index, path=call.path: Answer.of(clients[index].post(path, content=stored.data)),
        )
        orthanc, fastpacs = answers
        if orthanc.status == 500 and orthanc.json["Details"].startswith("No valid presentation context"):
            assert fastpacs.status == 200, fastpacs.content
            (syntax, _), *others = received[1]
            assert not others and syntax in PROFILES[peer], received[1]
            _check_pixels(name, _arrivals_document(stored, received[1]))
            continue
        checker.record(call, answer_differences(*answers, call, ({}, {})))
        _compare_arrivals(checker, stored, name, *received)
    checker.verdict()


def _finished_job(client: httpx.Client, path: str, body: dict[str, Any], timeout: float = 20.0) -> dict:
    """The job's outcome once it has ended."""
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["ID"]
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["State"] not in ("Success", "Failure"):
        assert time.monotonic() < deadline, f"job {path} still {job['State']}"
        time.sleep(0.05)
    keys = ("State", "ErrorCode", "ErrorDescription", "ErrorDetails", "Progress")
    return {key: job[key] for key in keys} | {"Failed": job["Content"]["FailedInstancesCount"]}


# --- C-MOVE and C-GET SCP --------------------------------------------------------------------------------


def _final_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> dict[str, Any]:
    """Category of the last status and the completed sub-operations (see the module's docstring)."""
    last = None
    for status, _ in responses:
        if status:
            last = status
    assert last is not None, "no answer"
    code = int(last.Status)
    category = FINAL_STATUS.get(code, "Warning" if code == 0xB000 else "Failure")
    return {"Status": category, "Completed": int(last.get("NumberOfCompletedSuboperations", 0))}


def _study(stored: Stored) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = stored.original.StudyInstanceUID
    return identifier


def _c_move(port: int, stored: Stored, destination: str) -> dict[str, Any]:
    ae = AE(ae_title=MOVER)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANC")
    assert assoc.is_established
    try:
        model = StudyRootQueryRetrieveInformationModelMove
        return _final_status(assoc.send_c_move(_study(stored), destination, model))
    finally:
        assoc.release()


def _c_get(
    port: int, stored: Stored, profile: str, arrivals: Arrivals, one_context_per_syntax: bool = False
) -> dict[str, Any]:
    """A C-GET by an SCU proposing the file's SOP class in the profile's transfer syntaxes (another
    SOP class for ``none``), in one presentation context or one per transfer syntax."""
    transcoding = not profile.endswith("nt")
    syntaxes = PROFILES[profile if transcoding else profile[:-2]]
    sop_class = str(stored.original.SOPClassUID)
    if not syntaxes:
        sop_class = MRImageStorage if sop_class == CTImageStorage else CTImageStorage
        syntaxes = [ExplicitVRLittleEndian]
    ae = AE(ae_title=GETTER if transcoding else GETTER + "NT")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for group in [[syntax] for syntax in syntaxes] if one_context_per_syntax else [syntaxes]:
        ae.add_requested_context(sop_class, group)
    handlers = [(evt.EVT_C_STORE, arrivals.on_c_store)]
    roles = [build_role(sop_class, scp_role=True)]
    assoc = ae.associate("127.0.0.1", port, ae_title="ORTHANC", ext_neg=roles, evt_handlers=handlers)
    assert assoc.is_established
    try:
        return _final_status(assoc.send_c_get(_study(stored), StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()


@pytest.mark.reference
@pytest.mark.parametrize("stored", [name for name in FILES if name not in MOVED_LESS], indirect=True)
def test_move_and_get(pair: ServerPair, arrivals: Arrivals, stored: Stored) -> None:
    checker = pair.checker()
    ports = (pair.orthanc.dicom_port, pair.fastpacs.dicom_port)
    for peer in MOVE_PEERS:
        name = f"c-move {stored.name} to {peer}"
        results, received = _on_both(
            pair, arrivals, lambda index, peer=peer: _c_move(ports[index], stored, peer.upper())
        )
        checker.compare_documents(name, *results)
        _compare_arrivals(checker, stored, name, *received)
    for profile in GET_PEERS:
        name = f"c-get {stored.name} to {profile}"
        results, received = _on_both(
            pair, arrivals, lambda index, profile=profile: _c_get(ports[index], stored, profile, arrivals)
        )
        checker.compare_documents(name, *results)
        _compare_arrivals(checker, stored, name, *received)
    checker.verdict()


# --- DicomScuPreferredTransferSyntax -------------------------------------------------------------------


@pytest.fixture(scope="module")
def preferring_pair(
    tmp_path_factory: pytest.TempPathFactory, peer_modalities: dict[str, dict[str, Any]]
) -> Iterator[ServerPair]:
    options = {**COMMON_OPTIONS, "DicomScuPreferredTransferSyntax": ImplicitVRLittleEndian}
    servers = ServerPair.start(tmp_path_factory.mktemp("preferring"), options)
    try:
        _register(servers, peer_modalities)
        yield servers
    finally:
        servers.stop()


@pytest.mark.reference
@pytest.mark.parametrize("file_name", ["SC_rgb_jpeg_dcmtk.dcm", "CT_small.dcm"])
def test_preferred_transfer_syntax(preferring_pair: ServerPair, arrivals: Arrivals, file_name: str) -> None:
    """Implicit VR Little Endian preferred: what the peer does not accept as stored arrives in it, when
    the peer accepts it too; a file the peer accepts as stored is sent as it is."""
    pair = preferring_pair
    stored = Stored(file_name, pair)
    checker = pair.checker()
    clients = (pair.orthanc_client, pair.fastpacs_client)
    ports = (pair.orthanc.dicom_port, pair.fastpacs.dicom_port)
    try:
        _compare_synchronous_store(checker, arrivals, stored, "unc", f"preferred store {stored.name} to unc")
        name = f"preferred c-move {stored.name} to unc"
        results, received = _on_both(pair, arrivals, lambda index: _c_move(ports[index], stored, "UNC"))
        checker.compare_documents(name, *results)
        _compare_arrivals(checker, stored, name, *received)
        name = f"preferred c-get {stored.name} to unc"
        results, received = _on_both(
            pair,
            arrivals,
            lambda index: _c_get(ports[index], stored, "unc", arrivals, one_context_per_syntax=True),
        )
        checker.compare_documents(name, *results)
        _compare_arrivals(checker, stored, name, *received)
    finally:
        for client in clients:
            client.delete(f"/instances/{stored.id}")
    checker.verdict()


def _ct_small(accepted: set[str], preferred: str) -> Dataset | None:
    """CT_small.dcm (Explicit VR Little Endian) as sent to a peer accepting ``accepted`` for CT."""
    path = test_file("CT_small.dcm")
    instance = StoredInstance(
        path, CTImageStorage, "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322", ExplicitVRLittleEndian
    )
    return dataset_to_send(
        instance, {(CTImageStorage, syntax) for syntax in accepted}, True, "PEER", preferred=preferred
    )


def test_a_compressed_preferred_transfer_syntax_is_encoded_when_pydicom_can() -> None:
    """RLE Lossless preferred and accepted: the file is compressed (losslessly) to it."""
    sent = _ct_small({RLELossless, ImplicitVRLittleEndian}, RLELossless)
    assert sent is not None
    assert sent.file_meta.TransferSyntaxUID == RLELossless
    assert numpy.array_equal(sent.pixel_array, dcmread(test_file("CT_small.dcm")).pixel_array)


def test_a_preferred_jpeg_lossless_is_encoded() -> None:
    """JPEG Lossless (.4.70) preferred and accepted: the file is compressed to it, losslessly."""
    sent = _ct_small({JPEGLosslessSV1, ImplicitVRLittleEndian}, JPEGLosslessSV1)
    assert sent is not None
    assert sent.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert numpy.array_equal(sent.pixel_array, dcmread(test_file("CT_small.dcm")).pixel_array)


def test_a_preferred_transfer_syntax_no_encoder_writes_falls_back_to_an_uncompressed_one() -> None:
    """JPEG Extended 12-bit preferred (nothing here encodes it): the uncompressed syntax the peer
    accepted; none accepted: Orthanc's error, naming the preferred syntax."""
    sent = _ct_small({JPEGExtended12Bit, ImplicitVRLittleEndian}, JPEGExtended12Bit)
    assert sent is not None
    assert sent.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    with pytest.raises(TranscodingError) as failure:
        _ct_small({JPEGExtended12Bit}, JPEGExtended12Bit)
    assert str(failure.value) == (
        f"Cannot transcode from {ExplicitVRLittleEndian} to one of [ {JPEGExtended12Bit} ]"
    )


BYTE_ORDER_FILES = (
    "rtdose_rle_1frame.dcm",  # 32-bit pixels, RLE
    "rtdose_expb_1frame.dcm",  # 32-bit pixels, Big Endian
    "MR_small_bigendian.dcm",  # 16 bits
    "SC_rgb_small_odd_big_endian.dcm",  # 8 bits in OW
    "SC_rgb_rle_32bit.dcm",
    "ExplVR_BigEnd.dcm",
)


@pytest.mark.parametrize("name", BYTE_ORDER_FILES)
def test_a_change_of_byte_order_keeps_the_pixels(name: str) -> None:
    """Sent in each uncompressed syntax (fastpacs alone: Orthanc 1.10.1 cannot decode 32-bit RLE), the
    pixels decode to the original's; 32-bit pixel cells are swapped whole, not as 16-bit words."""
    path = test_file(name)
    original = dcmread(path)
    instance = StoredInstance(
        path,
        str(original.SOPClassUID),
        str(original.SOPInstanceUID),
        str(original.file_meta.TransferSyntaxUID),
    )
    for target in TRANSCODING_TARGETS:
        if target == instance.transfer_syntax:
            continue
        sent = dataset_to_send(instance, {(instance.sop_class_uid, target)}, True, "PEER")
        assert sent is not None
        assert sent.file_meta.TransferSyntaxUID == target
        assert numpy.array_equal(sent.pixel_array, original.pixel_array), target
