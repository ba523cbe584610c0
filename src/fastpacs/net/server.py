"""The DICOM server: a pynetdicom AE on ``DicomPort``, started and stopped with the web server.

Associations are accepted as Orthanc 1.10.1 accepts them:

- with ``DicomCheckCalledAet``, the called AET must be ``DicomAet`` (else
  A-ASSOCIATE-RJ, "called AE title not recognised");
- the caller must be known unless some ``DicomAlwaysAllow*`` option is set
  (else A-ASSOCIATE-RJ, "calling AE title not recognised");
- each request is then checked against the caller's permissions, and a
  request the caller may not make aborts the association.

Presentation contexts: Verification; every storage SOP class pynetdicom
knows and the retired ones Orthanc accepts (:mod:`fastpacs.net.sop_classes`),
in the transfer syntaxes of ``AcceptedTransferSyntaxes`` (with the
SCP role offered for C-GET); the patient-root and study-root query/retrieve
models (FIND, MOVE, GET); the Storage Commitment Push Model, both roles
(:mod:`fastpacs.net.storage_commitment`). With ``UnknownSopClassAccepted``, pynetdicom's
unrestricted storage mode accepts any storage-like SOP class — in whatever
transfer syntax the caller proposes first (pynetdicom cannot combine that
mode with a transfer syntax filter). Both settings can change at run time
(``/tools/accepted-transfer-syntaxes``, ``/tools/unknown-sop-class-accepted``);
new associations see the change.

With ``DicomTlsEnabled``, the server accepts DICOM TLS connections only
(:mod:`fastpacs.net.tls`); the TLS handshake of each is made on its own
thread (:mod:`fastpacs.net.reactor`).

The server listens on all interfaces only when ``RemoteAccessAllowed`` is
set, on the loopback interface otherwise (fastpacs's secure default; Orthanc
always listens on all interfaces).
"""

import asyncio
import logging
import ssl

from pynetdicom import AE, _config, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from fastpacs.config import Config, ConfigurationError
from fastpacs.metrics import ServerMetrics
from fastpacs.net.association import caller_of, is_refused
from fastpacs.net.observation import AssociationObserver
from fastpacs.net.query_retrieve_scp import QueryRetrieveScp
from fastpacs.net.reactor import EventDrivenAE
from fastpacs.net.sop_classes import STORAGE_SOP_CLASSES, register_storage_not_in_pynetdicom
from fastpacs.net.storage_commitment import STORAGE_COMMITMENT_PUSH_MODEL, StorageCommitmentScp
from fastpacs.net.store_scp import StoreScp
from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.net.tls import TlsConfigurationError, server_context
from fastpacs.net.transfer_syntaxes import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    LISTED_ONLY,
    UNCOMPRESSED,
    accepted_at_start,
)
from fastpacs.services.ingest import IngestService
from fastpacs.services.modalities import DicomRequest, ModalityRegistry
from fastpacs.services.queries import LocalQueryRetrieve
from fastpacs.services.storage_commitment import StorageCommitmentService

logger = logging.getLogger(__name__)
logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO level logs every PDU

MAXIMUM_ASSOCIATIONS = 128
QUERY_RETRIEVE_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)
STORAGE_PREFERENCE = (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
ECHO_SUCCESS = 0x0000
ECHO_REFUSED = 0x0124

REJECTED_PERMANENT = 0x01
SERVICE_USER = 0x01
CALLING_AE_NOT_RECOGNISED = 0x03
CALLED_AE_NOT_RECOGNISED = 0x07


def _preferred_first(transfer_syntaxes: list[str]) -> list[str]:
    """Orthanc's preference among the syntaxes a caller proposes in one context: explicit little
    endian, explicit big endian, implicit little endian, then the compressed ones (not those
    listed only)."""
    preferred = [syntax for syntax in STORAGE_PREFERENCE if syntax in transfer_syntaxes]
    others = [syntax for syntax in transfer_syntaxes if syntax not in STORAGE_PREFERENCE]
    return preferred + [syntax for syntax in others if syntax not in LISTED_ONLY]


class SharedContexts(list[PresentationContext]):
    """The server's supported contexts, shared by every association.

    pynetdicom deep-copies the server's contexts for each new association
    (about 50 ms for the 200 contexts here, more under load): a cost every
    one-file association of a modality would pay. Negotiation only reads
    them (it builds new contexts for its answer), and the server replaces
    the list rather than changing it, so sharing them is safe.
    """

    def __deepcopy__(self, memo: dict) -> "SharedContexts":
        return self


def presentation_contexts(transfer_syntaxes: list[str]) -> SharedContexts:
    """The contexts the server supports, storage in the given transfer syntaxes.

    pynetdicom accepts, for each proposed context, the first syntax of this
    list the caller proposed: the order is the server's preference.
    """
    register_storage_not_in_pynetdicom()
    ae = AE()
    ae.add_supported_context(Verification, list(UNCOMPRESSED))
    storage_syntaxes = _preferred_first(transfer_syntaxes)
    if storage_syntaxes:
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, storage_syntaxes, scu_role=True, scp_role=True)
    for model in QUERY_RETRIEVE_MODELS:
        ae.add_supported_context(model, list(UNCOMPRESSED))
    # The SCP role too: a peer answering fastpacs's request sends its N-EVENT-REPORT as the SCP.
    ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL, list(UNCOMPRESSED), scu_role=True, scp_role=True)
    return SharedContexts(ae.supported_contexts)


def _ssl_context(config: Config, registry: ModalityRegistry) -> ssl.SSLContext | None:
    """With ``DicomTlsEnabled``, what accepted connections are wrapped with; a configuration error
    (the server does not start) when the TLS files cannot be used."""
    if not config.dicom_tls_enabled:
        return None
    try:
        return server_context(registry.tls_files, config.dicom_tls_remote_certificate_required)
    except TlsConfigurationError as error:
        raise ConfigurationError(str(error)) from error


class DicomServer:
    """The AE, its listening socket and the handlers of its events."""

    def __init__(
        self,
        config: Config,
        registry: ModalityRegistry,
        ingest: IngestService,
        local: LocalQueryRetrieve,
        loop: asyncio.AbstractEventLoop,
        *,
        metrics: ServerMetrics,
    ):
        self.config = config
        self.observer = AssociationObserver(metrics)
        self.registry = registry
        self.loop = loop
        self.store = StoreScp(registry, ingest, loop)
        self.storage_commitment: StorageCommitmentScp | None = None
        self.query_retrieve = QueryRetrieveScp(registry, local)
        self.accepted_transfer_syntaxes = accepted_at_start(
            [config.accepted_transfer_syntaxes]
            if isinstance(config.accepted_transfer_syntaxes, str)
            else config.accepted_transfer_syntaxes,
            config.transfer_syntax_groups,
        )
        self.unknown_sop_class_accepted = config.unknown_sop_class_accepted
        self.ae = EventDrivenAE(ae_title=config.dicom_aet)
        self.ae.maximum_pdu_size = 0
        self.ae.maximum_associations = MAXIMUM_ASSOCIATIONS
        self.ae.network_timeout = config.dicom_scp_timeout or None
        self.ssl_context = _ssl_context(config, registry)
        self._server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        """Listen on ``DicomPort`` (associations are served by pynetdicom's threads)."""
        _config.UNRESTRICTED_STORAGE_SERVICE = self.unknown_sop_class_accepted
        address = "0.0.0.0" if self.config.remote_access_allowed else "127.0.0.1"
        observer = self.observer
        handlers = [
            *NO_DELAY_HANDLERS,
            *observer.handlers,
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, observer.timed("C-ECHO", self._on_echo)),
            (evt.EVT_C_STORE, observer.timed("C-STORE", self.store.handle)),
            (evt.EVT_C_FIND, observer.timed_generator("C-FIND", self.query_retrieve.find)),
            (evt.EVT_C_MOVE, observer.timed_generator("C-MOVE", self.query_retrieve.move)),
            (evt.EVT_C_GET, observer.timed_generator("C-GET", self.query_retrieve.get)),
        ]
        if self.storage_commitment is not None:
            handlers += [
                (evt.EVT_N_ACTION, observer.timed("N-ACTION", self.storage_commitment.n_action)),
                (
                    evt.EVT_N_EVENT_REPORT,
                    observer.timed("N-EVENT-REPORT", self.storage_commitment.n_event_report),
                ),
            ]
        self._server = self.ae.start_server(
            (address, self.config.dicom_port),
            block=False,
            evt_handlers=handlers,
            contexts=presentation_contexts(self.accepted_transfer_syntaxes),
            ssl_context=self.ssl_context,
        )
        logger.info(
            "DICOM server %s listening on %s:%d%s",
            self.config.dicom_aet,
            address,
            self.config.dicom_port,
            " (DICOM TLS)" if self.ssl_context is not None else "",
        )

    def serve_storage_commitment(self, service: StorageCommitmentService) -> None:
        """Handle the Storage Commitment Push Model with this service (before :meth:`start`)."""
        self.storage_commitment = StorageCommitmentScp(
            self.registry, self.loop, service.requested, service.received
        )

    def stop(self) -> None:
        """Abort the associations in progress and close the listening socket (blocking)."""
        self.ae.shutdown()
        self._server = None

    def set_accepted_transfer_syntaxes(self, transfer_syntaxes: list[str]) -> None:
        self.accepted_transfer_syntaxes = transfer_syntaxes
        if self._server is not None:
            self._server.contexts = presentation_contexts(transfer_syntaxes)

    def set_unknown_sop_class_accepted(self, accepted: bool) -> None:
        self.unknown_sop_class_accepted = accepted
        _config.UNRESTRICTED_STORAGE_SERVICE = accepted

    # --- association events (on the association's thread)

    def _on_requested(self, event: evt.Event) -> None:
        """Refuse the association before negotiation, as Orthanc does, when the AETs say so."""
        caller = caller_of(event.assoc)
        if self.config.dicom_check_called_aet and not self.registry.same_aet(
            caller.called_aet, self.config.dicom_aet
        ):
            logger.warning(
                "association refused: called AET %r is not %r", caller.called_aet, self.config.dicom_aet
            )
            self._reject(event, CALLED_AE_NOT_RECOGNISED)
        elif not self.registry.is_known_caller(caller.aet, caller.host):
            logger.warning(
                "association refused: AET %r on %s is not a known modality", caller.aet, caller.host
            )
            self._reject(event, CALLING_AE_NOT_RECOGNISED)

    @staticmethod
    def _reject(event: evt.Event, diagnostic: int) -> None:
        event.assoc.acse.send_reject(REJECTED_PERMANENT, SERVICE_USER, diagnostic)
        evt.trigger(event.assoc, evt.EVT_REJECTED, {})
        event.assoc.kill()

    def _on_echo(self, event: evt.Event) -> int:
        return ECHO_REFUSED if is_refused(event, self.registry, DicomRequest.ECHO) else ECHO_SUCCESS
