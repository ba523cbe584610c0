"""Associations fastpacs opens to remote modalities: C-ECHO, C-STORE, C-FIND, C-MOVE.

With the modality's ``UseDicomTls``, associations are made over DICOM TLS
(:mod:`fastpacs.net.tls`).

Everything here blocks (pynetdicom's SCU API is synchronous): the services
call it through ``asyncio.to_thread``. Every association sets TCP_NODELAY on
its socket and asks for an unlimited PDU size. Failures raise
:class:`DicomNetworkError` with texts in the style of Orthanc's
(``DicomAssociation - connecting to AET "X": ...``), which the services turn
into Orthanc's "Error in the network protocol".

C-STORE sends each file as it is stored, without decoding it, in a
presentation context with the file's own transfer syntax. Each SOP class is
also proposed in the configured ``DicomScuPreferredTransferSyntax`` and the
uncompressed transfer syntaxes (Explicit and Implicit VR Little Endian,
Explicit VR Big Endian), as Orthanc proposes them; a file whose transfer syntax
the peer did not accept is transcoded to one of those it did (decompressed,
inflated, its byte order changed, compressed when the preferred syntax is one
pydicom can encode), as Orthanc does, unless the modality's
``AllowTranscoding`` is off (:func:`dataset_to_send`, also used by the C-MOVE
and C-GET sub-operations of the server).
"""

import contextlib
import io
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import dcmwrite
from pynetdicom import AE, _config, build_context
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.dicom.transcoding import transcode
from fastpacs.dicom.writer import file_meta
from fastpacs.errors import OrthancError
from fastpacs.net.datasets import dataset_of
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.net.tls import DicomTlsFiles, TlsConfigurationError, client_context
from fastpacs.net.transfer_syntaxes import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED,
)
from fastpacs.storage.blobs import decompress

logger = logging.getLogger(__name__)

# Files are streamed from storage as they are; a dataset is decoded only to convert it.
_config.STORE_SEND_CHUNKED_DATASET = True

MAX_CONTEXTS = 128
"""A requestor may propose at most 128 presentation contexts (PS3.8 9.3.2.2)."""
ALERT_WAIT = 1.0
"""Seconds to wait for a TLS alert after a handshake, when telling why an association failed."""
STATUS_SUCCESS = 0x0000
STATUS_PENDING = (0xFF00, 0xFF01)
STATUS_CANCEL = 0xFE00
TRANSCODING_TARGETS = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
"""The uncompressed transfer syntaxes an instance is transcoded to when the peer does not accept its
own, by preference after the configured ``DicomScuPreferredTransferSyntax``."""

_STATUS_DESCRIPTIONS = {
    0xA700: "out of resources",
    0xA701: "out of resources - unable to calculate number of matches",
    0xA702: "out of resources - unable to perform sub-operations",
    0xA801: "move destination unknown",
    0xA900: "identifier does not match SOP class",
    0xB000: "sub-operations complete - one or more failures",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
}


_NAMING_META = ("MediaStorageSOPInstanceUID", "MediaStorageSOPClassUID", "TransferSyntaxUID")
"""The file meta elements pynetdicom names a C-STORE and chooses its presentation context by, when it
sends a file from its path."""


@dataclass(frozen=True)
class StoredInstance:
    """An instance to send by C-STORE: its file and what a presentation context needs."""

    path: Path | None
    """``None`` for a dataset that is not stored here (``store-straight``)."""
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    compressed: bool = False
    """Whether the file at ``path`` is stored compressed (``StorageCompression``): read it through
    :meth:`read_file` or :meth:`sendable`, never as a DICOM file."""

    def read_file(self) -> bytes:
        """The DICOM file (blocking I/O, and zlib for a compressed one: run it off the event loop)."""
        assert self.path is not None
        stored = self.path.read_bytes()
        return decompress(stored) if self.compressed else stored

    def sendable(self) -> str | Dataset:
        """What pynetdicom sends: the file's path when its file meta names the instance, SOP class and
        transfer syntax the index knows, else its dataset with a file meta that does.

        From a path, pynetdicom names the C-STORE after the file meta, which a file edited without
        its meta may hold stale (the request must name the dataset's instance, as Orthanc's does)
        or incomplete, or which a bare dataset lacks (pynetdicom refuses to send those); a file
        stored compressed has no path to send.
        """
        assert self.path is not None
        if not self.compressed:
            try:
                meta = read_file_meta_info(self.path)
            except InvalidDicomError:  # a bare dataset, stored as it was uploaded: no meta at all
                meta = FileMetaDataset()
            named = tuple(meta.get(keyword) for keyword in _NAMING_META)
            if named == (self.sop_instance_uid, self.sop_class_uid, self.transfer_syntax):
                return str(self.path)
        dataset = dcmread(io.BytesIO(self.read_file()), force=True)
        dataset.file_meta = file_meta(self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax)
        return dataset


class DicomNetworkError(Exception):
    """An association could not be made, broke, or a request failed (the message says which)."""


class ServiceNotSupportedError(DicomNetworkError):
    """The modality accepted the association but not the presentation context of the request."""


class NoAcceptableContextError(DicomNetworkError):
    """The modality accepted the association but none of the presentation contexts proposed for a store."""


class TranscodingError(DicomNetworkError):
    """An instance could not be converted to a transfer syntax the peer accepts."""


class DimseStatusError(DicomNetworkError):
    """The peer answered a request with a failure status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class RemoteNode(msgspec.Struct, frozen=True, array_like=True):
    """Where and who to call, and as whom."""

    aet: str
    host: str
    port: int
    local_aet: str
    timeout: float
    transcode: bool = True
    """Whether instances may be transcoded for a peer that does not accept their transfer syntax
    (the modality's ``AllowTranscoding``)."""
    tls: DicomTlsFiles | None = None
    """The files to connect with over DICOM TLS (the modality's ``UseDicomTls``); ``None``: plain TCP."""
    preferred_transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN
    """The configuration's ``DicomScuPreferredTransferSyntax`` (:func:`transcoding_targets`)."""


def _status_text(status: int) -> str:
    description = _STATUS_DESCRIPTIONS.get(status)
    if description is None and 0xC000 <= status <= 0xCFFF:
        description = "unable to process"
    return f"0x{status:04X}" + (f" ({description})" if description else "")


def _connection_failure(
    node: RemoteNode, tls: tuple[ssl.SSLContext, str | None] | None, timed_out: bool
) -> str:
    """Why no association could be made, told as Orthanc tells it.

    The port answers: the association timed out, or the peer closed the
    connection (a TLS-only peer called without TLS does), or, over TLS, the
    handshake failed.
    """
    try:
        with socket.create_connection((node.host, node.port), timeout=node.timeout) as connection:
            handshake_failure = _handshake_failure(connection, *tls) if tls is not None else None
    except ConnectionRefusedError:
        return "TCP Initialization Error: Connection refused"
    except TimeoutError:
        return "TCP Initialization Error: Operation timed out"
    except OSError as error:
        return f"TCP Initialization Error: {error.strerror or error}"
    if handshake_failure is not None:
        return handshake_failure
    return "DUL network read timeout" if timed_out else "Peer aborted Association (or never connected)"


def _handshake_failure(
    connection: socket.socket, context: ssl.SSLContext, server_hostname: str | None
) -> str | None:
    """Why a TLS connection failed (pynetdicom only logs it): the handshake tried again to tell.

    With TLS 1.3, a server refusing this side's certificate says so after the
    handshake, in an alert that the first read raises.
    """
    try:
        with context.wrap_socket(connection, server_hostname=server_hostname) as tls_connection:
            tls_connection.settimeout(ALERT_WAIT)
            with contextlib.suppress(TimeoutError):
                tls_connection.recv(1)
            return None
    except ssl.SSLError as error:
        return f"DICOM TLS handshake failed: {error.reason or error}"
    except OSError as error:
        return f"DICOM TLS handshake failed: {error.strerror or error}"


def tls_arguments(node: RemoteNode) -> tuple[ssl.SSLContext, str | None] | None:
    """pynetdicom's ``tls_args`` for an association with the node; :class:`DicomNetworkError` when
    the node uses DICOM TLS but the TLS files of this server are not configured or unusable."""
    if node.tls is None:
        return None
    try:
        return client_context(node.tls), node.host or None  # the host name only goes in SNI
    except TlsConfigurationError as error:
        raise DicomNetworkError(f'DicomAssociation - connecting to AET "{node.aet}": {error}') from error


def _application_entity(node: RemoteNode) -> AE:
    ae = AE(ae_title=node.local_aet)
    ae.maximum_pdu_size = 0
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = node.timeout
    return ae


def leave_answers_to_requests(assoc: Association) -> None:
    """Keep a requestor's reactor thread from taking the answers its requests wait for.

    pynetdicom (3.0.4) pauses the reactor before each request on a flag the
    reactor may have raised just before it resumed; a reactor delayed there (a
    loaded machine, a fast peer) takes the answer off the queue as
    "unexpected" and the request times out after the DIMSE timeout without a
    status. The associations fastpacs opens serve no request of their peer
    (it is no C-GET SCU), so their reactor never needs a message; the
    benchmark's and the tests' senders use this too.
    """
    get_message = assoc.dimse.get_msg

    def answers_for_requests_only(block: bool = False) -> tuple[int | None, Any]:
        return get_message(block=True) if block else (None, None)

    assoc.dimse.get_msg = answers_for_requests_only  # type: ignore[method-assign]


def open_association(
    node: RemoteNode, contexts: list[PresentationContext], ext_neg: list[Any] | None = None
) -> Association:
    """An established association; :class:`DicomNetworkError` otherwise.

    ``ext_neg``: extended negotiation items (SCP/SCU role selection...).
    """
    tls = tls_arguments(node)
    ae = _application_entity(node)
    started = time.monotonic()
    assoc = ae.associate(
        node.host,
        node.port,
        contexts,
        ae_title=node.aet,
        max_pdu=0,
        evt_handlers=NO_DELAY_HANDLERS,
        tls_args=tls,
        ext_neg=ext_neg,
    )
    if assoc.is_established:
        leave_answers_to_requests(assoc)
        return assoc
    timed_out = time.monotonic() - started >= node.timeout
    reason = (
        "Association rejected by the remote modality"
        if assoc.is_rejected
        else _connection_failure(node, tls, timed_out)
    )
    message = f'DicomAssociation - connecting to AET "{node.aet}": {reason}'
    if assoc.is_aborted and assoc.rejected_contexts and not assoc.accepted_contexts:
        raise ServiceNotSupportedError(message)  # accepted without any service asked for: pynetdicom aborts
    raise DicomNetworkError(message)


def echo(node: RemoteNode) -> None:
    assoc = open_association(node, [build_context(Verification)])
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    code = status.get("Status") if status else None
    if code != STATUS_SUCCESS:
        raise DicomNetworkError(f'C-ECHO SCU to AET "{node.aet}" has failed' + _code_suffix(code))


def _code_suffix(code: int | None) -> str:
    return " (no answer)" if code is None else f" with DIMSE status {_status_text(code)}"


# --- C-STORE -------------------------------------------------------------------------------------


def transcoding_targets(preferred: str) -> tuple[str, ...]:
    """What an instance is transcoded to, in order, when the peer does not accept its transfer syntax:
    the preferred transfer syntax, then the uncompressed ones (as Orthanc)."""
    return (preferred, *(target for target in TRANSCODING_TARGETS if target != preferred))


def storage_contexts(
    instances: list[StoredInstance], preferred: str = EXPLICIT_VR_LITTLE_ENDIAN
) -> list[PresentationContext]:
    """Each (SOP class, transfer syntax) pair in a context of its own, then for each SOP class the
    preferred transfer syntax alone (a peer accepting it gets a context in it even when it also
    accepts another) and the other uncompressed ones."""
    pairs = dict.fromkeys((item.sop_class_uid, item.transfer_syntax) for item in instances)
    contexts = [build_context(sop_class, [syntax]) for sop_class, syntax in pairs]
    for sop_class in dict.fromkeys(sop_class for sop_class, _ in pairs):
        if (sop_class, preferred) not in pairs:
            contexts.append(build_context(sop_class, [preferred]))
        others = [
            target
            for target in TRANSCODING_TARGETS
            if target != preferred and (sop_class, target) not in pairs
        ]
        if others:
            contexts.append(build_context(sop_class, others))
    if len(contexts) > MAX_CONTEXTS:
        logger.warning(
            "C-STORE: %d presentation contexts needed, only %d proposed", len(contexts), MAX_CONTEXTS
        )
    return contexts[:MAX_CONTEXTS]


def accepted_pairs(assoc: Association, as_scu: bool = True) -> set[tuple[str, str]]:
    """(SOP class, transfer syntax) of the contexts the peer accepted for sending C-STOREs."""
    return {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
        for cx in assoc.accepted_contexts
        if not as_scu or cx.as_scu
    }


def dataset_to_send(
    instance: StoredInstance,
    accepted: set[tuple[str, str]],
    transcode_allowed: bool,
    peer_aet: str,
    *,
    dataset: Dataset | None = None,
    preferred: str = EXPLICIT_VR_LITTLE_ENDIAN,
) -> Dataset | None:
    """What to send for an instance: ``None`` (or ``dataset`` when given) for the instance as it is,
    when the peer accepted its transfer syntax; else the instance transcoded, as Orthanc does, to the
    ``preferred`` transfer syntax if the peer accepted it and it can be encoded, or else to the first
    uncompressed one the peer accepted (:func:`transcoding_targets`).

    As Orthanc, nothing is converted for a modality whose AllowTranscoding is off, not even from
    one uncompressed syntax to another. :class:`DicomNetworkError` (with Orthanc's texts) when the
    instance cannot be sent: :class:`TranscodingError` when it could not be converted.
    """
    sop_class, syntax = instance.sop_class_uid, instance.transfer_syntax
    if (sop_class, syntax) in accepted:
        return dataset
    targets = [target for target in transcoding_targets(preferred) if (sop_class, target) in accepted]
    if not transcode_allowed or not targets:
        raise DicomNetworkError(
            f"No valid presentation context was negotiated for SOP class UID [{sop_class}] "
            f"and transfer syntax [{syntax}] while sending to modality [{peer_aet}]"
        )
    uncompressed = [target for target in targets if target in UNCOMPRESSED]
    attempts = uncompressed[:1]  # every uncompressed target fails alike (the decoding does): one is enough
    if (sop_class, preferred) in accepted and preferred not in UNCOMPRESSED:
        attempts.insert(0, preferred)
    data = _file_bytes(instance, dataset)
    for target in attempts:
        try:
            return dcmread(io.BytesIO(transcode(data, target)))
        except OrthancError as error:
            logger.info("cannot transcode %s to %s: %s", instance.sop_instance_uid, target, error.__cause__)
    listed = [target for target in UNCOMPRESSED if target in uncompressed] or [preferred]
    raise TranscodingError(f"Cannot transcode from {syntax} to one of [ {' '.join(listed)} ]")


def _file_bytes(instance: StoredInstance, dataset: Dataset | None) -> bytes:
    """The instance as a DICOM file: the stored one, or ``dataset`` encoded."""
    if dataset is None:
        return instance.read_file()
    output = io.BytesIO()
    dcmwrite(output, dataset)
    return output.getvalue()


class StoreAssociation:
    """One association used for a series of C-STOREs (a store job)."""

    def __init__(self, node: RemoteNode, instances: list[StoredInstance]):
        self.node = node
        try:
            self.assoc = open_association(node, storage_contexts(instances, node.preferred_transfer_syntax))
        except ServiceNotSupportedError as error:
            message = f'Unable to negotiate a presentation context with AET "{node.aet}"'
            raise NoAcceptableContextError(message) from error
        self._accepted = accepted_pairs(self.assoc)
        self._message_id = 0

    def send(
        self,
        instance: StoredInstance,
        originator: tuple[str, int] | None = None,
        dataset: Dataset | None = None,
    ) -> int:
        """C-STORE one instance (its file, or ``dataset`` when given already decoded); the status answered.

        :class:`DicomNetworkError` if it cannot be sent or the peer answered nothing.
        """
        if not self.assoc.is_established:
            raise DicomNetworkError(f'DicomAssociation - the association with AET "{self.node.aet}" was lost')
        self._message_id = self._message_id % 65535 + 1
        node = self.node
        dataset = dataset_to_send(
            instance,
            self._accepted,
            node.transcode,
            node.aet,
            dataset=dataset,
            preferred=node.preferred_transfer_syntax,
        )
        originator_aet, originator_id = originator if originator is not None else (None, None)
        try:
            status = self.assoc.send_c_store(
                dataset if dataset is not None else instance.sendable(),
                msg_id=self._message_id,
                originator_aet=originator_aet,
                originator_id=originator_id,
            )
        except ValueError as error:  # the dataset cannot be encoded in the accepted context
            raise DicomNetworkError(f'C-STORE SCU to AET "{self.node.aet}": {error}') from error
        code = status.get("Status") if status else None
        if code is None:
            raise DicomNetworkError(f'C-STORE SCU to AET "{self.node.aet}" has failed (no answer)')
        return int(code)

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def is_store_success(status: int) -> bool:
    """Success, or a warning (PS3.4 B.2.3: the instance was stored)."""
    return status == STATUS_SUCCESS or 0xB000 <= status <= 0xBFFF


# --- C-FIND and C-MOVE ---------------------------------------------------------------------------


def _query_models(patient_root: bool) -> tuple[str, str]:
    if patient_root:
        return PatientRootQueryRetrieveInformationModelFind, PatientRootQueryRetrieveInformationModelMove
    return StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove


def find(node: RemoteNode, keys: dict[int, str], patient_root: bool) -> list[Dataset]:
    """The answers of a C-FIND (patient root for patient-level queries, study root otherwise)."""
    model, _ = _query_models(patient_root)
    assoc = open_association(node, [build_context(model)])
    try:
        return list(_responses(node, "C-FIND", assoc.send_c_find(dataset_of(keys), model)))
    finally:
        assoc.release()


def find_worklist(node: RemoteNode, identifier: Dataset) -> list[Dataset]:
    """The answers of a Modality Worklist C-FIND; :class:`ServiceNotSupportedError` if the
    modality offers no worklist (the only context asked for)."""
    assoc = open_association(node, [build_context(ModalityWorklistInformationFind)])
    try:
        return list(
            _responses(node, "C-FIND", assoc.send_c_find(identifier, ModalityWorklistInformationFind))
        )
    finally:
        assoc.release()


class MoveAssociation:
    """One association for a series of C-MOVEs (a retrieve job)."""

    def __init__(self, node: RemoteNode, patient_root: bool):
        self.node = node
        _, self.model = _query_models(patient_root)
        self.assoc = open_association(node, [build_context(self.model)])

    def move(self, keys: dict[int, str], target_aet: str) -> None:
        """C-MOVE what the keys name to ``target_aet``; :class:`DicomNetworkError` unless all moved."""
        if not self.assoc.is_established:
            raise DicomNetworkError(f'DicomAssociation - the association with AET "{self.node.aet}" was lost')
        try:
            for _ in _responses(
                self.node, "C-MOVE", self.assoc.send_c_move(dataset_of(keys), target_aet, self.model)
            ):
                pass
        except ValueError as error:  # what pynetdicom cannot send: an empty or too long destination...
            raise DicomNetworkError(f'C-MOVE SCU to AET "{self.node.aet}": {error}') from error

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def _responses(node: RemoteNode, service: str, responses: Iterator[tuple[Dataset, Dataset | None]]):
    """The identifiers of pending responses; :class:`DicomNetworkError` unless the last is a success."""
    for status, identifier in responses:
        code = status.get("Status") if status else None
        if code in STATUS_PENDING:
            if identifier is not None:
                yield identifier
            continue
        if code == STATUS_SUCCESS:
            return
        message = f'{service} SCU to AET "{node.aet}" has failed' + _code_suffix(code)
        if code is None:
            raise DicomNetworkError(message)
        raise DimseStatusError(message, code)
