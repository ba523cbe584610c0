"""Orthanc peers: other Orthanc-compatible servers, reached over their REST API.

Peers come from ``OrthancPeers`` in the configuration, or from the index
when ``OrthancPeersInDatabase`` is set (the configured ones are then
ignored, as in Orthanc). ``PUT``/``DELETE /peers/{name}`` change them at
run time; without the database option the changes last until the server
stops.

``POST /peers/{name}/store`` sends the instances of the resources named,
one ``POST /instances`` each, in an ``OrthancPeerStore`` job
(:class:`PeerStoreJob`). The job keeps the peer's settings, so that
changing or deleting the peer afterwards does not redirect it.

Secrets are never shown: ``/peers`` lists the names of ``HttpHeaders``
without their values, and ``Password`` and ``CertificateKeyPassword`` as
``null``, as Orthanc does. Unlike Orthanc, the ``Peer`` of a job's content
lists header names only too (Orthanc shows their values there, and those
are often tokens).

Exports are logged (``LogExportedResources``) when the store request is
accepted, before anything is sent, one entry per resource named, as
Orthanc does. Unlike Orthanc, a request naming an unknown peer or an
unknown resource logs nothing: nothing was exported or even attempted, and
an audit log of what left the server must not say otherwise.
"""

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from isal import igzip

from fastpacs.config import Config, ConfigurationError, OrthancPeer
from fastpacs.dicom.ids import Level, RawId, format_id, parse_id
from fastpacs.dicom.transcoding import is_transfer_syntax, transcode
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.index.database import Database
from fastpacs.index.updates import IndexUpdate
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.engine import JobEngine
from fastpacs.jobs.job import Job
from fastpacs.json_body import NotJsonError, read_json
from fastpacs.net.peers import PeerClient, PeerError
from fastpacs.net.scu import StoredInstance
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.exports import (
    ExportLog,
    StoreRequest,
    parse_store_request,
    run_synchronously,
    stored_instances,
)
from fastpacs.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

PEERS_DATABASE = "peers"
PEER_OPERATIONS = ("configuration", "store", "store-straight", "system")
"""What ``GET /peers/{name}`` lists."""
GZIP_LEVEL = 1
"""``Compress``: the fastest level (DICOM pixel data gains little from a stronger one)."""
MEGABYTE = 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OrthancPeer)


def _bad_format(details: str | None = None) -> OrthancError:
    return OrthancError(ErrorCode.BAD_FILE_FORMAT, details)


def unknown_peer(name: str) -> OrthancError:
    return OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"No peer with symbolic name: {name}")


# --- a peer's settings: PUT /peers/{name} and how they are shown ----------------------------------


def checked_url(url: str) -> str:
    """A peer's URL as Orthanc keeps it: http(s) when a scheme is given, ending with ``/``."""
    if not url:
        raise _bad_format("Empty URL")
    if "://" in url and not url.startswith(("http://", "https://")):
        raise _bad_format(f"Bad URL: {url}")
    return url if url.endswith("/") else url + "/"


def _optional_string(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise _bad_format()
    return value


def _existing_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise OrthancError(ErrorCode.INEXISTENT_FILE, f"Cannot open {what} file: {path}")
    return path


def parse_peer(body: bytes) -> OrthancPeer:
    """A ``PUT /peers/{name}`` body, checked with Orthanc's errors (object or array form)."""
    try:
        document = read_json(body)
    except NotJsonError:
        raise BareHttpError(404) from None  # Orthanc answers nothing, hence its 404
    if isinstance(document, list):
        return _peer_from_items(document)
    if not isinstance(document, dict):
        raise _bad_format()
    url = document.get("Url", "")
    if not isinstance(url, str):
        raise _bad_format()
    peer = OrthancPeer(url=checked_url(url))
    peer.username = _optional_string(document, "Username")
    peer.password = _optional_string(document, "Password")
    if peer.password is not None and peer.username is None:
        raise _bad_format()
    certificate = _optional_string(document, "CertificateFile")
    if certificate:
        peer.certificate_file = _existing_file(certificate, "certificate")
        key = _optional_string(document, "CertificateKeyFile")
        peer.certificate_key_file = _existing_file(key, "key") if key else None
        peer.certificate_key_password = _optional_string(document, "CertificateKeyPassword")
    headers = document.get("HttpHeaders", {})
    if not isinstance(headers, dict) or not all(isinstance(value, str) for value in headers.values()):
        raise _bad_format()
    peer.http_headers = headers
    timeout = document.get("Timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise _bad_format("Integer value expected in field: Timeout")
    if timeout < 0:
        raise _bad_format("Unsigned integer value expected in field: Timeout")
    peer.timeout = timeout
    pkcs11 = document.get("Pkcs11", False)
    if not isinstance(pkcs11, bool):
        raise _bad_format()
    peer.pkcs11 = pkcs11
    return peer


def _peer_from_items(items: list[Any]) -> OrthancPeer:
    """Orthanc's short form: ``["url"]`` or ``["url", "username", "password"]``."""
    if len(items) not in (1, 3) or not all(isinstance(item, str) for item in items):
        raise _bad_format()
    peer = OrthancPeer(url=checked_url(items[0]))
    if len(items) == 3:
        peer.username, peer.password = items[1], items[2]
    return peer


def peer_json(peer: OrthancPeer) -> dict[str, Any]:
    """Orthanc's JSON of a peer (``/peers?expand``, ``/peers/{name}/configuration``): no secret."""
    answer: dict[str, Any] = {
        "HttpHeaders": sorted(peer.http_headers),
        "Pkcs11": peer.pkcs11,
        "Timeout": peer.timeout,
        "Url": peer.url,
    }
    if peer.username:
        answer["Username"] = peer.username
        answer["Password"] = None
    if peer.certificate_file:
        answer["CertificateFile"] = peer.certificate_file
        answer["CertificateKeyFile"] = None
        answer["CertificateKeyPassword"] = None
    return answer


def job_peer_json(peer: OrthancPeer) -> list[str] | dict[str, Any]:
    """The ``Peer`` of a store job's content: Orthanc's short form when it says everything."""
    if not (peer.certificate_file or peer.pkcs11 or peer.http_headers or peer.timeout):
        return [peer.url, peer.username, ""] if peer.username else [peer.url]
    answer: dict[str, Any] = {
        "HttpHeaders": sorted(peer.http_headers),
        "Pkcs11": peer.pkcs11,
        "Timeout": peer.timeout,
        "Url": peer.url,
    }
    if peer.username:
        answer["Username"] = peer.username
    if peer.certificate_file:
        answer["CertificateFile"] = peer.certificate_file
        answer["CertificateKeyFile"] = peer.certificate_key_file
    return answer


# --- the registry ----------------------------------------------------------------------------------


def _put(update: IndexUpdate, name: str, encoded: bytes) -> None:
    update.txn.put(name.encode(), encoded, db=update.dbs[PEERS_DATABASE])


def _delete(update: IndexUpdate, name: str) -> None:
    update.txn.delete(name.encode(), db=update.dbs[PEERS_DATABASE])


def _load(database: Database) -> dict[str, OrthancPeer]:
    with database.read() as view:
        cursor = view.txn.cursor(db=view.dbs[PEERS_DATABASE])
        return {bytes(key).decode(): _decoder.decode(value) for key, value in cursor}


def _configured(name: str, peer: OrthancPeer) -> OrthancPeer:
    """A peer of ``OrthancPeers``, its URL checked and normalized as for ``PUT /peers/{name}``."""
    try:
        return msgspec.structs.replace(peer, url=checked_url(peer.url))
    except OrthancError as error:
        raise ConfigurationError(f"OrthancPeers[{name!r}]: {error.details}") from error


class PeerRegistry:
    """The known peers, by symbolic name.

    The table is replaced as a whole on every change, so a reader never sees it half-changed.
    """

    def __init__(self, config: Config, database: Database, writer: IndexWriter):
        self.writer = writer
        self.in_database = config.orthanc_peers_in_database
        if self.in_database:
            self._peers = _load(database)
        else:
            self._peers = {
                name: _configured(name, peer)
                for name, peer in config.orthanc_peers.items()
                if isinstance(peer, OrthancPeer)  # Config made the array forms OrthancPeers
            }

    def names(self) -> list[str]:
        return sorted(self._peers)

    def all(self) -> dict[str, OrthancPeer]:
        return dict(sorted(self._peers.items()))

    def get(self, name: str) -> OrthancPeer | None:
        return self._peers.get(name)

    def require(self, name: str) -> OrthancPeer:
        """The peer called ``name``; Orthanc's 404 otherwise."""
        peer = self._peers.get(name)
        if peer is None:
            raise unknown_peer(name)
        return peer

    async def put(self, name: str, peer: OrthancPeer) -> None:
        if self.in_database:
            encoded = _encoder.encode(peer)
            await self.writer.run(lambda update: _put(update, name, encoded))
        self._peers = {**self._peers, name: peer}

    async def delete(self, name: str) -> None:
        if name not in self._peers:
            raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Unknown Orthanc peer: {name}")
        if self.in_database:
            await self.writer.run(lambda update: _delete(update, name))
        self._peers = {key: value for key, value in self._peers.items() if key != name}


async def load_peers(config: Config, database: Database, writer: IndexWriter) -> PeerRegistry:
    """The registry, its database read in a thread."""
    return await asyncio.to_thread(PeerRegistry, config, database, writer)


# --- POST /peers/{name}/store ----------------------------------------------------------------------


@dataclass
class PeerStoreRequest:
    """A ``POST /peers/{name}/store`` body: what modalities accept, plus ``Compress`` and ``Transcode``."""

    common: StoreRequest
    compress: bool = False
    transcode: str | None = None


def parse_peer_store_request(body: bytes) -> PeerStoreRequest:
    """The resources (a bare ID, a list, or ``{"Resources": [...]}``) and the options of a store."""
    request = PeerStoreRequest(parse_store_request(body))
    try:
        document = read_json(body)
    except NotJsonError:
        return request  # a bare ID
    if not isinstance(document, dict):
        return request
    compress = document.get("Compress", False)
    if not isinstance(compress, bool):
        raise _bad_format("Boolean value expected in field: Compress")
    request.compress = compress
    if "Transcode" in document:
        syntax = document["Transcode"]
        if not isinstance(syntax, str):
            raise _bad_format("String value expected in field: Transcode")
        if not is_transfer_syntax(syntax):
            raise _bad_format(f"Unknown transfer syntax UID: {syntax}")
        request.transcode = syntax
    return request


class PeerStoreState(msgspec.Struct, array_like=True):
    """What a peer store job saves: where to send, what, how, and how it went so far."""

    peer: OrthancPeer
    instances: list[RawId]
    parents: list[str]
    compress: bool = False
    transcode: str | None = None
    permissive: bool = False
    failed: int = 0
    size: int = 0
    """Bytes sent so far (compressed size with ``Compress``)."""


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(PeerStoreState)


class PeerStoreJob(Job):
    """Sends instances to a peer, one ``POST /instances`` each: Orthanc's ``OrthancPeerStore`` job.

    A step sends one instance, in Orthanc's order (:meth:`IndexView.descendants_last_first`), so
    that the peer receives them as it would from Orthanc, one after the other. Without
    ``Permissive`` a failed instance fails the job; with it, failures are counted and the job goes on.
    """

    type_name = "OrthancPeerStore"

    def __init__(self, state: PeerStoreState, service: "PeerService"):
        self.state = state
        self.service = service
        self._instances: list[StoredInstance | None] | None = None

    @property
    def total_steps(self) -> int:
        return len(self.state.instances)

    async def start(self, steps_done: int) -> int:
        if self._instances is None:
            self._instances = await asyncio.to_thread(self.service.resolve, self.state.instances)
        return steps_done

    async def run_step(self, index: int) -> None:
        try:
            await self._send(index)
        except OrthancError as error:
            if not self.state.permissive:
                raise
            logger.warning("store to peer %s: %s", self.state.peer.url, error.details)
            self.state.failed += 1

    async def _send(self, position: int) -> None:
        assert self._instances is not None
        instance = self._instances[position]
        rid = self.state.instances[position]
        if instance is None:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Instance {format_id(rid)} was deleted")
        state = self.state
        sent = await self.service.send_instance(
            state.peer, rid, instance, compress=state.compress, transfer_syntax=state.transcode
        )
        state.size += sent  # read after the await (``+= await`` reads the size before it)

    def reset(self) -> None:
        self.state.failed = 0
        self.state.size = 0

    def content(self) -> dict[str, Any]:
        state = self.state
        content: dict[str, Any] = {
            "Compress": state.compress,
            "Description": "REST API",
            "FailedInstancesCount": state.failed,
            "InstancesCount": len(state.instances),
            "Peer": job_peer_json(state.peer),
            "Size": str(state.size),
            "SizeMB": state.size // MEGABYTE,
        }
        if state.parents:
            content["ParentResources"] = state.parents
        if state.transcode is not None:
            content["Transcode"] = state.transcode
        return content

    def save(self) -> bytes:
        return _state_encoder.encode(self.state)


# --- the service -----------------------------------------------------------------------------------


def _network_error(error: PeerError) -> OrthancError:
    return OrthancError(ErrorCode.NETWORK_PROTOCOL, str(error))


def _check_supported(peer: OrthancPeer) -> None:
    if peer.pkcs11:
        raise OrthancError(ErrorCode.NOT_IMPLEMENTED, "fastpacs has no support for PKCS#11")


class PeerService:
    """What fastpacs asks of peers: store (as a job), store-straight, and their /system."""

    def __init__(
        self,
        config: Config,
        database: Database,
        storage: BlobStore,
        pool: WorkerPool,
        *,
        registry: PeerRegistry,
        log: ExportLog,
        engine: JobEngine,
    ):
        self.database = database
        self.storage = storage
        self.pool = pool
        self.registry = registry
        self.log = log
        self.engine = engine
        self.client = PeerClient(config.http_timeout, config.https_verify_peers, config.https_ca_certificates)
        engine.register(PeerStoreJob.type_name, self._load)

    def _load(self, data: bytes) -> PeerStoreJob:
        return PeerStoreJob(_state_decoder.decode(data), self)

    def resolve(self, instances: list[RawId]) -> list[StoredInstance | None]:
        """The files of instances by ID (``None`` for an instance deleted since)."""
        with self.database.read() as view:
            found = [stored_instances(view, self.storage, Level.INSTANCE, rid) for rid in instances]
        return [files[0] if files else None for files in found]

    async def send_instance(
        self,
        peer: OrthancPeer,
        rid: RawId,
        instance: StoredInstance,
        *,
        compress: bool,
        transfer_syntax: str | None,
    ) -> int:
        """``POST /instances`` one stored instance to the peer; return the bytes sent."""
        _check_supported(peer)
        assert instance.path is not None
        try:
            data = await asyncio.to_thread(instance.read_file)
        except FileNotFoundError:
            raise OrthancError(ErrorCode.UNKNOWN_RESOURCE, f"Instance {format_id(rid)} was deleted") from None
        if transfer_syntax is not None and transfer_syntax != instance.transfer_syntax:
            data = await self.pool.run(transcode, data, transfer_syntax)
        headers = {"Content-Type": "application/dicom"}
        if compress:
            data = await asyncio.to_thread(igzip.compress, data, GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        try:
            await self.client.request(peer, "POST", "instances", data, headers)
        except PeerError as error:
            raise OrthancError(
                ErrorCode.NETWORK_PROTOCOL, f"Cannot send instance {format_id(rid)}: {error}"
            ) from error
        return len(data)

    async def prepare(self, name: str, request: PeerStoreRequest) -> PeerStoreJob:
        """The store job of a request; the export is logged once the peer and every resource are known."""
        peer = self.registry.require(name)
        named: list[tuple[Level, RawId]] = []
        instances: list[RawId] = []
        with self.database.read() as view:
            for text in request.common.resources:
                rid = parse_id(text)
                if rid is None:
                    raise _bad_format(f"This string is not a valid Orthanc identifier: {text}")
                record = view.resource(rid)
                if record is None:
                    raise OrthancError(ErrorCode.UNKNOWN_RESOURCE)
                level = Level(record.level)
                instances.extend(view.descendants_last_first(rid, level, Level.INSTANCE))
                named.append((level, rid))
        await self.log.log(named, name)
        state = PeerStoreState(
            peer=peer,
            instances=instances,
            parents=sorted({format_id(rid) for _, rid in named}),
            compress=request.compress,
            transcode=request.transcode,
            permissive=request.common.permissive,
        )
        return PeerStoreJob(state, self)

    async def store(self, name: str, request: PeerStoreRequest) -> dict[str, Any]:
        """Store synchronously (the job's content) or queue the job (its ID and path)."""
        job = await self.prepare(name, request)
        priority = request.common.priority
        if request.common.synchronous:
            return await run_synchronously(self.engine, job, priority)
        job_id = await self.engine.submit(job, priority)
        return {"ID": job_id, "Path": f"/jobs/{job_id}"}

    async def store_straight(self, name: str, data: bytes) -> Any:
        """Send a DICOM file given in the request to the peer (not stored here); the peer's answer."""
        peer = self.registry.require(name)
        _check_supported(peer)
        try:
            response = await self.client.request(
                peer, "POST", "instances", data, {"Content-Type": "application/dicom"}
            )
        except PeerError as error:
            if error.status is None:
                raise _network_error(error) from error
            raise OrthancError(
                ErrorCode.NETWORK_PROTOCOL, f"Cannot send DICOM to remote peer: {name} ({error})"
            ) from error
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise OrthancError(
                ErrorCode.NETWORK_PROTOCOL, f"The peer {name} did not answer JSON to POST /instances"
            ) from None

    async def system(self, name: str) -> bytes:
        """The peer's ``GET /system`` answer, as it sent it."""
        peer = self.registry.require(name)
        _check_supported(peer)
        try:
            response = await self.client.request(peer, "GET", "system")
        except PeerError as error:
            raise _network_error(error) from error
        return response.content

    async def close(self) -> None:
        await self.client.close()
