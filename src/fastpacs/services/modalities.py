"""The remote DICOM modalities (``DicomModalities``) and what each may ask of fastpacs.

Modalities come from the configuration, or from the index when
``DicomModalitiesInDatabase`` is set (the configured ones are then ignored,
as in Orthanc). ``PUT``/``DELETE /modalities/{name}`` change them at run
time; without the database option the changes last until the server stops.

The table is replaced as a whole on every change, so the association threads
of the DICOM server read it without a lock.

Who may do what, as Orthanc 1.10.1 decides it (:meth:`ModalityRegistry.is_allowed`):

- a request type whose ``DicomAlwaysAllow*`` option is set is allowed to anyone;
- otherwise the calling AET must be a registered modality's (compared
  case-insensitively unless ``StrictAetComparison``) whose ``Allow*`` flag
  for the request is set; when several modalities share the AET, or with
  ``DicomCheckModalityHost``, the modality's host must be the caller's IP.

A modality's ``UseDicomTls`` makes fastpacs call it over DICOM TLS
(:mod:`fastpacs.net.tls`), with this server's TLS files.

An association is accepted at all (:meth:`ModalityRegistry.is_known_caller`) when
any ``DicomAlwaysAllow*`` option is set, or the caller is a registered modality.
"""

import asyncio
from enum import StrEnum
from typing import Any

import msgspec

from fastpacs.config import Config, DicomModality
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.writer import IndexWriter
from fastpacs.json_body import json_body
from fastpacs.net import scu
from fastpacs.net.scu import RemoteNode
from fastpacs.net.tls import DicomTlsFiles, missing_files

MODALITIES_DATABASE = "modalities"

MANUFACTURERS = frozenset(
    {"Generic", "GenericNoWildcardInDates", "GenericNoUniversalWildcard", "Vitrea", "GE"}
)
OBSOLETE_MANUFACTURERS = {
    # Names Orthanc 1.10.1 still reads, and what it turns them into.
    "AgfaImpax": "GenericNoWildcardInDates",
    "SyngoVia": "GenericNoWildcardInDates",
    "EFilm2": "Generic",
    "MedInria": "Generic",
    "ClearCanvas": "Generic",
    "Dcm4Chee": "Generic",
}
MAX_PORT = 65534
"""Orthanc refuses 65535 too."""

_PERMISSION_FIELDS = (
    "AllowEcho",
    "AllowFind",
    "AllowFindWorklist",
    "AllowGet",
    "AllowMove",
    "AllowStore",
    "AllowNAction",
    "AllowEventReport",
    "AllowTranscoding",
    "UseDicomTls",
)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DicomModality)


class DicomRequest(StrEnum):
    """The DIMSE services a remote modality may be allowed to request."""

    ECHO = "Echo"
    FIND = "Find"
    FIND_WORKLIST = "FindWorklist"
    GET = "Get"
    MOVE = "Move"
    STORE = "Store"
    N_ACTION = "NAction"
    EVENT_REPORT = "EventReport"


_ALLOWED_BY = {
    DicomRequest.ECHO: "allow_echo",
    DicomRequest.FIND: "allow_find",
    DicomRequest.FIND_WORKLIST: "allow_find_worklist",
    DicomRequest.GET: "allow_get",
    DicomRequest.MOVE: "allow_move",
    DicomRequest.STORE: "allow_store",
    DicomRequest.N_ACTION: "allow_n_action",
    DicomRequest.EVENT_REPORT: "allow_event_report",
}


def _bad_format(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def _manufacturer(name: str) -> str:
    if name in MANUFACTURERS:
        return name
    if name in OBSOLETE_MANUFACTURERS:
        return OBSOLETE_MANUFACTURERS[name]
    raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f'Unknown modality manufacturer: "{name}"')


def _port(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_format()
    if not 1 <= value <= MAX_PORT:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE,
            f"A TCP port number must be in range [1..{MAX_PORT}], but found: {value}",
        )
    return value


def _string_field(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise _bad_format(f"String value expected in field: {name}")
    return value


def parse_modality(body: bytes) -> DicomModality:
    """A ``PUT /modalities/{name}`` body, checked with Orthanc's errors (object or array form)."""
    document = json_body(body)
    if isinstance(document, list):
        return _modality_from_array(document)
    if not isinstance(document, dict):
        raise _bad_format()
    modality = DicomModality(
        aet=_string_field(document, "AET"),
        host=_string_field(document, "Host"),
        port=_port(document.get("Port")),
    )
    if "Manufacturer" in document:
        modality.manufacturer = _manufacturer(_string_field(document, "Manufacturer"))
    for field in msgspec.structs.fields(DicomModality):
        name = field.encode_name
        if name not in document:
            continue
        value = document[name]
        if name in _PERMISSION_FIELDS:
            if not isinstance(value, bool):
                raise _bad_format(f"Boolean value expected in field: {name}")
            setattr(modality, field.name, value)
        elif name == "Timeout":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad_format(f"Integer value expected in field: {name}")
            if value < 0:
                raise _bad_format(f"Unsigned integer value expected in field: {name}")
            modality.timeout = value
        elif name == "LocalAet":
            modality.local_aet = _string_field(document, name)
    if "AllowStorageCommitment" in document:
        value = document["AllowStorageCommitment"]
        if not isinstance(value, bool):
            raise _bad_format("Boolean value expected in field: AllowStorageCommitment")
        modality.allow_n_action = modality.allow_event_report = value
    return modality


def _modality_from_array(items: list[Any]) -> DicomModality:
    if not 3 <= len(items) <= 4 or not all(isinstance(item, str) for item in items[:2]):
        raise _bad_format()
    modality = DicomModality(aet=items[0], host=items[1], port=_port(items[2]))
    if len(items) == 4:
        if not isinstance(items[3], str):
            raise _bad_format()
        modality.manufacturer = _manufacturer(items[3])
    return modality


def parse_echo_timeout(body: bytes, body_required: bool = False) -> int | None:
    """The ``Timeout`` of an echo body: a JSON object, or nothing at all unless ``body_required``.

    As Orthanc, only a body of no byte is no body (whitespace is a JSON body that cannot be parsed).
    """
    if not body and not body_required:
        return None
    document = json_body(body, details="Cannot parse the JSON body")
    if not isinstance(document, dict) or "Timeout" not in document:
        return None
    timeout = document["Timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise _bad_format("Integer value expected in field: Timeout")
    return timeout


def modality_json(modality: DicomModality) -> dict[str, Any]:
    """Orthanc's JSON of a modality (``/modalities/{name}/configuration``)."""
    return msgspec.to_builtins(modality)


def unknown_modality(name: str) -> OrthancError:
    return OrthancError(ErrorCode.INEXISTENT_ITEM, f"No modality with symbolic name: {name}")


# --- persistence (DicomModalitiesInDatabase) -----------------------------------------------------


def _put(update: IndexUpdate, name: str, encoded: bytes) -> None:
    update.txn.put(name.encode(), encoded, db=update.dbs[MODALITIES_DATABASE])


def _delete(update: IndexUpdate, name: str) -> None:
    update.txn.delete(name.encode(), db=update.dbs[MODALITIES_DATABASE])


def _load(database: Database) -> dict[str, DicomModality]:
    with database.read() as view:
        cursor = view.txn.cursor(db=view.dbs[MODALITIES_DATABASE])
        return {bytes(key).decode(): _decoder.decode(value) for key, value in cursor}


# --- the registry --------------------------------------------------------------------------------


class ModalityRegistry:
    """The known modalities, looked up by symbolic name (REST API) or by AET (DICOM server)."""

    def __init__(self, config: Config, database: Database, writer: IndexWriter):
        self.config = config
        self.database = database
        self.writer = writer
        self.in_database = config.dicom_modalities_in_database
        self.tls_files = DicomTlsFiles(
            config.dicom_tls_certificate, config.dicom_tls_private_key, config.dicom_tls_trusted_certificates
        )
        """What associations with the modalities whose ``UseDicomTls`` is set are made with."""
        configured = config.dicom_modalities
        self._modalities: dict[str, DicomModality] = (
            _load(database)
            if self.in_database
            else {name: value for name, value in configured.items() if isinstance(value, DicomModality)}
        )
        self._always_allowed = {
            DicomRequest.ECHO: config.dicom_always_allow_echo,
            DicomRequest.FIND: config.dicom_always_allow_find,
            DicomRequest.FIND_WORKLIST: config.dicom_always_allow_find_worklist,
            DicomRequest.GET: config.dicom_always_allow_get,
            DicomRequest.MOVE: config.dicom_always_allow_move,
            DicomRequest.STORE: config.dicom_always_allow_store,
            DicomRequest.N_ACTION: False,  # Orthanc 1.10.1 has no DicomAlwaysAllow option for these two
            DicomRequest.EVENT_REPORT: False,
        }

    def names(self) -> list[str]:
        return sorted(self._modalities)

    def all(self) -> dict[str, DicomModality]:
        return dict(sorted(self._modalities.items()))

    def get(self, name: str) -> DicomModality | None:
        return self._modalities.get(name)

    def require(self, name: str) -> DicomModality:
        """The modality called ``name``; Orthanc's 404 otherwise."""
        modality = self._modalities.get(name)
        if modality is None:
            raise unknown_modality(name)
        return modality

    def node(
        self, modality: DicomModality, local_aet: str | None = None, timeout: int | None = None
    ) -> RemoteNode:
        """How to reach a modality: as its LocalAet, with its Timeout, unless the request says otherwise;
        over DICOM TLS with its UseDicomTls; transcoding to DicomScuPreferredTransferSyntax first.

        A modality with UseDicomTls while this server's TLS files are not
        configured: Orthanc's 500 "Bad sequence of calls", as it answers.
        """
        missing = missing_files(self.tls_files) if modality.use_dicom_tls else None
        if missing is not None:
            raise OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS, missing, http_status=500)
        return RemoteNode(
            aet=modality.aet,
            host=modality.host,
            port=modality.port,
            local_aet=local_aet or modality.local_aet or self.config.dicom_aet,
            timeout=float(timeout or modality.timeout or self.config.dicom_scu_timeout),
            transcode=modality.allow_transcoding,
            tls=self.tls_files if modality.use_dicom_tls else None,
            preferred_transfer_syntax=self.config.dicom_scu_preferred_transfer_syntax,
        )

    async def echo(self, name: str, timeout: int | None) -> None:
        """C-ECHO the modality; Orthanc's network error if it does not answer Success."""
        await self.echo_modality(self.require(name), timeout)

    async def echo_modality(self, modality: DicomModality, timeout: int | None) -> None:
        """C-ECHO a node, registered or not (/tools/dicom-echo)."""
        node = self.node(modality, timeout=timeout)
        try:
            await asyncio.to_thread(scu.echo, node)
        except scu.DicomNetworkError as error:
            raise OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error)) from error

    async def put(self, name: str, modality: DicomModality) -> None:
        if self.in_database:
            encoded = _encoder.encode(modality)
            await self.writer.run(lambda update: _put(update, name, encoded))
        self._modalities = {**self._modalities, name: modality}

    async def delete(self, name: str) -> None:
        if name not in self._modalities:
            raise OrthancError(
                ErrorCode.INEXISTENT_ITEM, f"Unknown DICOM modality with symbolic name: {name}"
            )
        if self.in_database:
            await self.writer.run(lambda update: _delete(update, name))
        self._modalities = {key: value for key, value in self._modalities.items() if key != name}

    # --- lookups by AET (called from the DICOM server's threads)

    def same_aet(self, first: str, second: str) -> bool:
        if self.config.strict_aet_comparison:
            return first.strip() == second.strip()
        return first.strip().upper() == second.strip().upper()

    def by_aet(self, aet: str) -> list[tuple[str, DicomModality]]:
        """The (name, modality) pairs registered with this AET, by name."""
        return [
            (name, value) for name, value in sorted(self._modalities.items()) if self.same_aet(value.aet, aet)
        ]

    def _callers(self, aet: str, host: str) -> list[DicomModality]:
        """The modalities a caller can be: its AET, and its host when that must be checked."""
        candidates = [modality for _, modality in self.by_aet(aet)]
        if len(candidates) > 1 or self.config.dicom_check_modality_host:
            candidates = [modality for modality in candidates if modality.host == host]
        return candidates

    def modality_of_caller(self, aet: str, host: str) -> DicomModality | None:
        """The registered modality a caller is (the first by name when several can be), if any."""
        candidates = self._callers(aet, host)
        return candidates[0] if candidates else None

    def is_known_caller(self, aet: str, host: str) -> bool:
        """Whether an association from this AET and host is accepted at all."""
        return any(self._always_allowed.values()) or bool(self._callers(aet, host))

    def is_allowed(self, request: DicomRequest, aet: str, host: str) -> bool:
        """Whether this caller may make this request."""
        if self._always_allowed[request]:
            return True
        attribute = _ALLOWED_BY[request]
        return any(getattr(modality, attribute) for modality in self._callers(aet, host))


async def load_registry(config: Config, database: Database, writer: IndexWriter) -> ModalityRegistry:
    """The registry, its database read in a thread."""
    return await asyncio.to_thread(ModalityRegistry, config, database, writer)
