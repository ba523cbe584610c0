"""The server's association machinery (fastpacs.net.reactor) in process, with pynetdicom (3.0.4) as the peer.

The network tests (tests/test_dicom_network.py) go through a real server;
these look at what the reactor changes in pynetdicom's own behaviour: PDUs
read by fastpacs (whole data sets through many PDUs or one), pynetdicom's
PDU decoding kept for observed associations, sockets watched with ``poll``
(descriptors above 1023), and no ``gc.collect`` from the accept loop.
"""

import gc
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import CTImageStorage
from pynetdicom.transport import ThreadedAssociationServer

from fastpacs.net.reactor import EventDrivenAE
from fastpacs.testing import free_port

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


class _Receiver:
    """An in-process server of the reactor's AE keeping what it received."""

    def __init__(self, maximum_pdu: int, observe_pdus: bool):
        self.data_sets: list[bytes] = []
        self.pdus: list[object] = []
        self.ae = EventDrivenAE(ae_title="REACTOR")
        self.ae.maximum_pdu_size = maximum_pdu
        self.ae.add_supported_context(CTImageStorage, EXPLICIT_VR_LITTLE_ENDIAN)
        self.port = free_port()
        handlers = [(evt.EVT_C_STORE, self._store)]
        if observe_pdus:
            handlers.append((evt.EVT_PDU_RECV, lambda event: self.pdus.append(event.pdu)))
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _store(self, event: evt.Event) -> int:
        self.data_sets.append(event.encoded_dataset(include_meta=False))
        return 0x0000


@pytest.fixture
def ct() -> Dataset:
    dataset = dcmread(get_testdata_file("CT_small.dcm", download=False))
    dataset.PixelData = bytes(range(256)) * 2048  # 512 KB: many PDUs of 16 KB
    return dataset


def _receiver(maximum_pdu: int, observe_pdus: bool = False) -> Iterator[_Receiver]:
    receiver = _Receiver(maximum_pdu, observe_pdus)
    try:
        yield receiver
    finally:
        receiver.ae.shutdown()


def _send(receiver: _Receiver, dataset: Dataset, count: int) -> list[int]:
    sender = AE(ae_title="SENDER")
    sender.add_requested_context(CTImageStorage, EXPLICIT_VR_LITTLE_ENDIAN)
    association = sender.associate("127.0.0.1", receiver.port, ae_title="REACTOR")
    assert association.is_established
    try:
        return [association.send_c_store(dataset).Status for _ in range(count)]
    finally:
        association.release()


def _encoded(dataset: Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


@pytest.mark.parametrize("maximum_pdu", [0, 16384])
def test_data_sets_arrive_whole_through_one_pdu_or_many(ct: Dataset, maximum_pdu: int) -> None:
    for receiver in _receiver(maximum_pdu):
        assert _send(receiver, ct, 3) == [0x0000] * 3
        assert len(receiver.data_sets) == 3
        assert dcmread(BytesIO(receiver.data_sets[0]), force=True).PixelData == ct.PixelData
        assert all(data_set == receiver.data_sets[0] for data_set in receiver.data_sets)
        assert not receiver.pdus


def test_observed_pdus_are_decoded_by_pynetdicom(ct: Dataset) -> None:
    for receiver in _receiver(16384, observe_pdus=True):
        assert _send(receiver, ct, 1) == [0x0000]
        data = [pdu for pdu in receiver.pdus if isinstance(pdu, P_DATA_TF)]
        assert len(data) > 30
        assert all(pdu.presentation_data_value_items for pdu in data)
        assert dcmread(BytesIO(receiver.data_sets[0]), force=True).PixelData == ct.PixelData


def test_accept_loop_never_collects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    for receiver in _receiver(0):
        assert isinstance(receiver.server, ThreadedAssociationServer)
        monkeypatch.setattr(gc, "collect", lambda *_: pytest.fail("gc.collect called"))
        for _ in range(120):  # pynetdicom's server collects every 60th turn
            receiver.server.service_actions()


@pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK's storescu is not installed")
def test_associations_on_descriptors_above_1023_are_served(ct: Dataset, tmp_path: Path) -> None:
    """``select`` cannot watch such a descriptor: pynetdicom's socket would take it for closed."""
    path = tmp_path / "ct.dcm"
    ct.save_as(path, implicit_vr=False, little_endian=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("fewer than 2048 descriptors allowed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    filler: list[int] = []
    try:
        for receiver in _receiver(0):
            while not filler or filler[-1] < 1100:  # the accepted socket will take a descriptor above
                filler.append(os.dup(0))
            sent = subprocess.run(
                ["storescu", "-aec", "REACTOR", "127.0.0.1", str(receiver.port), str(path)],
                check=False,
                capture_output=True,
                timeout=60,
            )
            assert sent.returncode == 0, sent.stderr.decode(errors="replace")
            assert len(receiver.data_sets) == 1
            assert dcmread(BytesIO(receiver.data_sets[0]), force=True).PixelData == ct.PixelData
    finally:
        for descriptor in filler:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
