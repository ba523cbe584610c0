"""C-GET, C-MOVE and C-STORE SCU of a series while one of its instances is deleted.

A retrieve or a store plans its instances from the index, then reads each
file as it sends it. For C-GET and C-MOVE an instance deleted in between
ends the retrieve there with 0xC000, as Orthanc 1.10.1 does (probed with the
same receiver): a C-GET's final response counts the sub-operations completed
before it (the deleted one not among the failed), a C-MOVE's counts nothing;
the association goes on (it used to fail the whole retrieve: 0xC411, a
handler exception in the log).
POST /modalities/{id}/store fails on it with Orthanc's 404 "Unknown
resource", as for an instance deleted before the store started, or with
``Permissive`` counts it failed and goes on (it used to fail with -1
"Internal error" and a traceback).
"""

from collections.abc import Iterator

import httpx
import pytest
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from fastpacs.testing import ServerProcess, fastpacs_server, free_port
from tests.conftest import c_get_association
from tests.reliability_helpers import InstanceMaker, instance_id

CALLER_AET = "RETRIEVER"
DESTINATION_AET = "DESTINATION"
SUCCESS = 0x0000
UNABLE_TO_PROCESS = 0xC000
DESTINATION_PORT = free_port()


@pytest.fixture(scope="module")
def retrieving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    modalities = {
        "caller": {"AET": CALLER_AET, "Host": "127.0.0.1", "Port": free_port()},
        "destination": {"AET": DESTINATION_AET, "Host": "127.0.0.1", "Port": DESTINATION_PORT},
    }
    options = {"DicomModalities": modalities}
    process = fastpacs_server(tmp_path_factory.mktemp("retrieve-races"), options).start()
    yield process
    process.stop()


def _stored_series(server: ServerProcess, patient: str) -> list[Dataset]:
    maker = InstanceMaker()
    datasets = [maker.dataset(patient, 1, number) for number in range(3)]
    for number in range(3):
        data = maker.file(patient, 1, number)
        answer = httpx.post(f"{server.base_url}/instances", content=data, timeout=30)
        assert answer.status_code == 200, answer.text
    return datasets


def _series_query(dataset: Dataset) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = dataset.StudyInstanceUID
    query.SeriesInstanceUID = dataset.SeriesInstanceUID
    return query


class DeletingReceiver:
    """A C-STORE handler that deletes, on its first sub-operation, the instance to be sent next (the
    last stored of those not received yet: the server sends a series last stored first, as Orthanc)."""

    def __init__(self, server: ServerProcess, datasets: list[Dataset]):
        self.server = server
        self.pending = {dataset.SOPInstanceUID: dataset for dataset in datasets}
        self.received: list[str] = []
        self.deleted: str | None = None

    def __call__(self, event: evt.Event) -> int:
        uid = event.request.AffectedSOPInstanceUID
        self.received.append(uid)
        del self.pending[uid]
        if self.deleted is None:
            victim = next(reversed(self.pending.values()))
            answer = httpx.delete(f"{self.server.base_url}/instances/{instance_id(victim)}", timeout=30)
            assert answer.status_code == 200
            self.deleted = victim.SOPInstanceUID
        return SUCCESS


def test_get_ends_at_the_deleted_instance(retrieving: ServerProcess) -> None:
    datasets = _stored_series(retrieving, "GET-DELETE-RACE")
    receiver = DeletingReceiver(retrieving, datasets)
    assoc = c_get_association(retrieving, CALLER_AET, receiver, timeout=30)
    try:
        query = _series_query(datasets[0])
        answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    final = answers[-1][0]
    assert (final.Status, final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (
        UNABLE_TO_PROCESS,
        0,
        len(receiver.received),
    )
    assert not assoc.is_aborted
    assert receiver.received
    assert receiver.deleted not in receiver.received


def test_move_ends_at_the_deleted_instance(retrieving: ServerProcess) -> None:
    datasets = _stored_series(retrieving, "MOVE-DELETE-RACE")
    receiver = DeletingReceiver(retrieving, datasets)
    destination = AE(ae_title=DESTINATION_AET)
    destination.add_supported_context(CTImageStorage)
    scp = destination.start_server(
        ("127.0.0.1", DESTINATION_PORT), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver)]
    )
    try:
        ae = AE(ae_title=CALLER_AET)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", retrieving.dicom_port, ae_title=retrieving.aet)
        assert assoc.is_established
        try:
            answers = list(
                assoc.send_c_move(
                    _series_query(datasets[0]), DESTINATION_AET, StudyRootQueryRetrieveInformationModelMove
                )
            )
        finally:
            assoc.release()
    finally:
        scp.shutdown()
    final = answers[-1][0]
    assert (final.Status, final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (
        UNABLE_TO_PROCESS,
        0,
        0,
    )
    assert receiver.received
    assert receiver.deleted not in receiver.received


@pytest.mark.parametrize("permissive", [False, True])
def test_a_store_to_a_modality_fails_on_a_deleted_instance_or_counts_it(
    retrieving: ServerProcess, permissive: bool
) -> None:
    """POST /modalities/{id}/store: the instance deleted during the store is Orthanc's 404 "Unknown
    resource" (the job fails there), or with ``Permissive`` a failed instance the job goes past."""
    datasets = _stored_series(retrieving, f"STORE-DELETE-RACE-{permissive}")
    receiver = DeletingReceiver(retrieving, datasets)
    destination = AE(ae_title=DESTINATION_AET)
    destination.add_supported_context(CTImageStorage)
    scp = destination.start_server(
        ("127.0.0.1", DESTINATION_PORT), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver)]
    )
    series = httpx.get(f"{retrieving.base_url}/instances/{instance_id(datasets[0])}/series", timeout=30)
    body = {"Resources": [series.json()["ID"]], "Permissive": permissive}
    try:
        answer = httpx.post(f"{retrieving.base_url}/modalities/destination/store", json=body, timeout=60)
    finally:
        scp.shutdown()
    if permissive:
        assert answer.status_code == 200, answer.text
        assert (answer.json()["InstancesCount"], answer.json()["FailedInstancesCount"]) == (3, 1)
        assert len(receiver.received) == 2
    else:
        assert (answer.status_code, answer.json()["OrthancStatus"]) == (404, 17)
        assert answer.json()["Details"].endswith("was deleted")
        assert len(receiver.received) == 1
    assert receiver.deleted not in receiver.received
