"""Configuration in Orthanc's format: JSON with comments, Orthanc's option names.

A configuration is a file, or a folder whose ``*.json`` files are merged in
name order (as Orthanc does). Options can also be overridden through the
environment: ``FASTPACS__HTTP_PORT=8043`` sets ``HttpPort``; the value is read
as JSON when it parses, as a plain string otherwise.

Options Orthanc knows but fastpacs does not implement are accepted with a
warning; options nobody knows are warned about too. A value of the wrong type
is a start-up error naming the option.
"""

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import msgspec
from pydicom.uid import AllTransferSyntaxes

from fastpacs.dicom import dictionary as tag_dictionary

logger = logging.getLogger(__name__)

ENVIRONMENT_PREFIX = "FASTPACS__"
CONFIG_ENVIRONMENT_VARIABLE = "FASTPACS_CONFIG_JSON"
"""How ``fastpacs serve`` hands the validated configuration to the server process."""


DEFAULT_LOSSY_QUALITY = 90
"""Orthanc's ``DicomLossyTranscodingQuality`` default."""


class ConfigurationError(Exception):
    """The configuration cannot be used; the message says which option and why."""


class DicomModality(msgspec.Struct, rename="pascal", forbid_unknown_fields=False):
    """A remote DICOM node, in the object form of ``DicomModalities``."""

    aet: str = msgspec.field(name="AET")
    host: str
    port: int
    manufacturer: str = "Generic"
    timeout: int = 0
    allow_echo: bool = True
    allow_find: bool = True
    allow_find_worklist: bool = True
    allow_get: bool = True
    allow_move: bool = True
    allow_store: bool = True
    allow_n_action: bool = msgspec.field(name="AllowNAction", default=True)
    allow_event_report: bool = True
    allow_transcoding: bool = True
    use_dicom_tls: bool = msgspec.field(name="UseDicomTls", default=False)
    local_aet: str = msgspec.field(name="LocalAet", default="")


def _modality_from_array(name: str, value: list[Any]) -> DicomModality:
    """Orthanc's short form of a ``DicomModalities`` entry: ``["AET", "host", port(, "manufacturer")]``."""
    if not 3 <= len(value) <= 4:
        raise ValueError(
            f"DicomModalities[{name!r}] must be [AET, host, port] or [AET, host, port, manufacturer]"
        )
    try:
        return msgspec.convert(
            dict(zip(("AET", "Host", "Port", "Manufacturer"), value, strict=False)), DicomModality
        )
    except msgspec.ValidationError as error:
        raise ValueError(f"DicomModalities[{name!r}]: {error}") from error


class OrthancPeer(msgspec.Struct, rename="pascal", forbid_unknown_fields=False):
    """A remote Orthanc-compatible server, in the object form of ``OrthancPeers``."""

    url: str
    username: str | None = None
    password: str | None = None
    http_headers: dict[str, str] = msgspec.field(default_factory=dict)
    certificate_file: str | None = None
    certificate_key_file: str | None = None
    certificate_key_password: str | None = None
    timeout: int = 0
    pkcs11: bool = False


def _peer_from_array(name: str, value: list[Any]) -> OrthancPeer:
    """Orthanc's short form of an ``OrthancPeers`` entry: ``[url]`` or ``[url, username, password]``."""
    if len(value) not in (1, 3) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"OrthancPeers[{name!r}] must be [url] or [url, username, password]")
    if len(value) == 1:
        return OrthancPeer(url=value[0])
    return OrthancPeer(url=value[0], username=value[1], password=value[2])


class Config(msgspec.Struct, rename="pascal", forbid_unknown_fields=False, kw_only=True):
    """Every option fastpacs reads, with Orthanc 1.10.1's defaults where Orthanc has the option."""

    name: str = "fastpacs"
    storage_directory: str = "fastpacs-storage"
    index_directory: str = "fastpacs-storage"
    storage_compression: bool = False
    """Store new attachments zlib-compressed, in Orthanc's format (see :mod:`fastpacs.storage.blobs`)."""

    http_server_enabled: bool = True
    http_port: int = 8042
    http_describe_errors: bool = True
    http_compression_enabled: bool = True
    remote_access_allowed: bool = False
    authentication_enabled: bool | None = None
    registered_users: dict[str, str] = msgspec.field(default_factory=dict)
    ssl_enabled: bool = False
    ssl_certificate: str = ""
    """A PEM file holding the server's certificate (chain) and its private key, as Orthanc's."""
    http_request_timeout: int = 30
    """Seconds a request's headers, and (plus 1 s per KB received) its body, may take to arrive."""

    dicom_server_enabled: bool = True
    dicom_aet: str = "ORTHANC"
    dicom_port: int = 4242
    dicom_check_called_aet: bool = False
    dicom_always_allow_echo: bool = True
    dicom_always_allow_store: bool = True
    dicom_always_allow_find: bool = False
    dicom_always_allow_find_worklist: bool = False
    dicom_always_allow_get: bool = False
    dicom_always_allow_move: bool = False
    dicom_check_modality_host: bool = False
    dicom_scp_timeout: int = 30
    dicom_scu_timeout: int = 10
    dicom_scu_preferred_transfer_syntax: str = "1.2.840.10008.1.2.1"
    """Proposed to modalities, and what an instance is transcoded to first when a modality does not
    accept its transfer syntax (:func:`fastpacs.net.scu.dataset_to_send`)."""
    dicom_tls_enabled: bool = False
    """Whether the DICOM server accepts TLS connections only (:mod:`fastpacs.net.tls`)."""
    dicom_tls_certificate: str = ""
    """PEM certificate of this server, presented by the DICOM server and to modalities with UseDicomTls."""
    dicom_tls_private_key: str = ""
    dicom_tls_trusted_certificates: str = ""
    """PEM certificates (concatenated) of the remote modalities or CAs trusted over DICOM TLS."""
    dicom_tls_remote_certificate_required: bool = True
    accepted_transfer_syntaxes: list[str] | str = msgspec.field(default_factory=lambda: ["1.2.840.10008.1.*"])
    deflated_transfer_syntax_accepted: bool | None = None
    """This and the eight options below: Orthanc's groups of transfer syntaxes, applied after
    ``AcceptedTransferSyntaxes`` when set (true adds the group, false removes it; see
    :mod:`fastpacs.net.transfer_syntaxes`)."""
    jpeg_transfer_syntax_accepted: bool | None = None
    jpeg2000_transfer_syntax_accepted: bool | None = None
    jpeg_lossless_transfer_syntax_accepted: bool | None = None
    jpip_transfer_syntax_accepted: bool | None = None
    mpeg2_transfer_syntax_accepted: bool | None = None
    rle_transfer_syntax_accepted: bool | None = None
    mpeg4_transfer_syntax_accepted: bool | None = None
    h265_transfer_syntax_accepted: bool | None = None
    unknown_sop_class_accepted: bool = False
    query_retrieve_size: int = 100
    dicom_modalities: dict[str, DicomModality | list[Any]] = msgspec.field(default_factory=dict)
    dicom_modalities_in_database: bool = False
    orthanc_peers: dict[str, OrthancPeer | list[Any]] = msgspec.field(default_factory=dict)
    orthanc_peers_in_database: bool = False
    http_timeout: int = 60
    """Seconds a request to a peer may last when the peer sets no ``Timeout``."""
    https_verify_peers: bool = True
    https_ca_certificates: str = msgspec.field(name="HttpsCACertificates", default="")
    """CA certificates (PEM file) HTTPS peers are verified with; empty: the system's."""

    default_encoding: str = "Latin1"
    stable_age: int = 60
    strict_aet_comparison: bool = False
    log_exported_resources: bool = False
    overwrite_instances: bool = False
    ingest_transcoding: str | None = None
    """Transfer syntax every new instance is converted to before it is stored; ``None``: stored as
    received (:mod:`fastpacs.pool.ingest_transcoding`)."""
    ingest_transcoding_of_uncompressed: bool = True
    """Whether ``IngestTranscoding`` converts files received uncompressed (Little/Big Endian)."""
    ingest_transcoding_of_compressed: bool = True
    """Whether ``IngestTranscoding`` converts files received in any other transfer syntax."""
    dicom_lossy_transcoding_quality: int = DEFAULT_LOSSY_QUALITY
    """JPEG quality (1-100) of lossy transcoding in Orthanc; fastpacs's JPEG baseline encoder writes 90
    only, and warns at start-up about any other value."""
    case_sensitive_pn: bool = msgspec.field(name="CaseSensitivePN", default=False)
    limit_find_results: int = 0
    limit_find_instances: int = 0
    concurrent_jobs: int = 2
    jobs_history_size: int = 10
    storage_commitment_reports_size: int = 100
    media_archive_size: int = 1
    """Outputs of asynchronous archive and media jobs kept at once (the oldest are deleted)."""
    save_jobs: bool = True
    metrics_enabled: bool = True
    execute_lua_enabled: bool = False
    lua_scripts: list[str] = msgspec.field(default_factory=list)
    lua_heart_beat_period: int = 0
    """Seconds between two calls of the OnHeartBeat() Lua callback (an option of Orthanc 1.11); 0: none."""
    user_metadata: dict[str, int] = msgspec.field(default_factory=dict)
    user_content_type: dict[str, int | list[Any]] = msgspec.field(default_factory=dict)
    check_revisions: bool = False
    maximum_storage_size: int = 0
    maximum_patient_count: int = 0
    malloc_arena_max: int = 2
    """Arenas glibc's malloc may use in the server process; 0: glibc's default (8 per core). Orthanc's
    default is 5; here threads rarely allocate at once (Python runs one at a time), and 2 arenas kept
    the server about 30 MB smaller after C-STORE and anonymization bursts than 5 or the default did."""

    # fastpacs's own options (Orthanc has no equivalent).
    worker_processes: int = 0
    """Processes in the worker pool; 0 means one per CPU core."""
    maximum_upload_size: int = 4096
    """Largest accepted request body, in MB."""
    index_map_size: int = 64
    """Size reserved for the LMDB index, in GB (sparse: only what is used takes disk space)."""
    log_level: str = "info"
    rest_api_reset_enabled: bool = False
    """Whether POST /tools/reset may restart the server (Orthanc always allows it)."""
    rest_api_shutdown_enabled: bool = False
    """Whether POST /tools/shutdown may stop the server (Orthanc always allows it)."""
    rest_api_write_to_file_system_enabled: bool = False
    """Whether POST /instances/{id}/export may write files where its body says (as in Orthanc)."""
    maximum_pending_ingest_size: int = 512
    """Uploads being stored at once, in MB; beyond it new uploads are answered 503 (Retry-After)."""
    rendered_cache_size: int = 32
    """Memory kept for rendered answers (previews, image-uint8/16, int16 frames) asked for again, in MB;
    0: none. A 512×512 CT preview takes about 100 KB."""
    lua_time_limit: float = 10
    """Seconds of Lua execution a script run or a callback may take before it is stopped; 0: no limit."""
    lua_memory_limit: int = 512
    """Memory each of the two Lua states may allocate, in MB; 0: no limit."""
    lua_unsafe_libraries_enabled: bool = False
    """Give Lua scripts io, os, require, loadfile, dofile, debug and CallSystem(), as Orthanc does;
    off, they have no access to files or processes."""
    dictionary: Any = msgspec.field(default_factory=dict)
    """The site's own attributes, ``{"gggg,eeee": [VR, name, min, max, private creator]}``
    (:func:`fastpacs.dicom.dictionary.user_dictionary`); anything but an object is ignored."""
    load_private_dictionary: bool = True
    """Whether DCMTK's private attribute names are known (``false``: only those of ``Dictionary``)."""
    default_private_creator: str = ""
    """The private creator of private tags a modification or creation request names without one."""

    def __post_init__(self) -> None:
        if not 0 < self.http_port < 65536:
            raise ValueError(f"HttpPort must be between 1 and 65535, not {self.http_port}")
        if not 0 < self.dicom_port < 65536:
            raise ValueError(f"DicomPort must be between 1 and 65535, not {self.dicom_port}")
        if not 0 < len(self.dicom_aet) <= 16:
            raise ValueError(f"DicomAet must have 1 to 16 characters, not {self.dicom_aet!r}")
        preferred = self.dicom_scu_preferred_transfer_syntax
        if preferred not in AllTransferSyntaxes:
            raise ValueError(f"DicomScuPreferredTransferSyntax is no transfer syntax: {preferred!r}")
        if self.ingest_transcoding is not None and self.ingest_transcoding not in AllTransferSyntaxes:
            # Orthanc refuses to start too, with this message.
            raise ValueError(f"Unknown transfer syntax for ingest transcoding: {self.ingest_transcoding}")
        if not 1 <= self.dicom_lossy_transcoding_quality <= 100:
            raise ValueError("DicomLossyTranscodingQuality must be between 1 and 100")
        if self.stable_age < 0:
            raise ValueError("StableAge cannot be negative")
        if self.concurrent_jobs < 0:
            raise ValueError("ConcurrentJobs cannot be negative")
        if self.media_archive_size < 1:
            raise ValueError("MediaArchiveSize must be at least 1")
        if self.ssl_enabled and not self.ssl_certificate:
            raise ValueError("SslEnabled needs SslCertificate (a PEM file with the certificate and its key)")
        self._check_dicom_tls_files()
        if self.worker_processes < 0:
            raise ValueError("WorkerProcesses cannot be negative")
        if self.maximum_upload_size <= 0:
            raise ValueError("MaximumUploadSize must be positive")
        if self.malloc_arena_max < 0:
            raise ValueError("MallocArenaMax cannot be negative")
        if self.rendered_cache_size < 0:
            raise ValueError("RenderedCacheSize cannot be negative")
        self.dicom_modalities = {
            name: _modality_from_array(name, value) if isinstance(value, list) else value
            for name, value in self.dicom_modalities.items()
        }
        self.orthanc_peers = {
            name: _peer_from_array(name, value) if isinstance(value, list) else value
            for name, value in self.orthanc_peers.items()
        }
        if not isinstance(self.dictionary, dict):  # Orthanc starts without it too
            logger.warning("Dictionary is not a JSON object: ignored")
            self.dictionary = {}
        if self.dictionary:
            tag_dictionary.user_dictionary(self.dictionary, self.load_private_dictionary, "")  # as Orthanc

    def _check_dicom_tls_files(self) -> None:
        """With ``DicomTlsEnabled``, the three files must be set; every file set must be readable
        (Orthanc refuses to start too). Whether they hold usable PEM is checked by the DICOM server."""
        files = {
            "DicomTlsCertificate": self.dicom_tls_certificate,
            "DicomTlsPrivateKey": self.dicom_tls_private_key,
            "DicomTlsTrustedCertificates": self.dicom_tls_trusted_certificates,
        }
        missing = [name for name, path in files.items() if not path]
        if self.dicom_tls_enabled and missing:
            raise ValueError(f"DicomTlsEnabled needs {', '.join(missing)}")
        for name, path in files.items():
            if not path:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                raise ValueError(f"{name}: cannot read {path}: {error.strerror or error}") from error

    @property
    def authentication_required(self) -> bool:
        """Orthanc's rule: authentication is on when asked for, or by default with remote access."""
        if self.authentication_enabled is None:
            return self.remote_access_allowed
        return self.authentication_enabled

    @property
    def user_dictionary(self) -> tag_dictionary.UserDictionary:
        """``Dictionary``, ``LoadPrivateDictionary`` and ``DefaultPrivateCreator``, checked."""
        return tag_dictionary.user_dictionary(
            self.dictionary, self.load_private_dictionary, self.default_private_creator
        )

    @property
    def transfer_syntax_groups(self) -> dict[str, bool]:
        """The ``*TransferSyntaxAccepted`` options the configuration sets, by their Orthanc names."""
        return {
            field.encode_name: value
            for field in msgspec.structs.fields(self)
            if field.encode_name.endswith("TransferSyntaxAccepted")
            and (value := getattr(self, field.name)) is not None
        }

    @property
    def storage_path(self) -> Path:
        return Path(self.storage_directory)

    @property
    def index_path(self) -> Path:
        return Path(self.index_directory)


KNOWN_OPTIONS = frozenset(field.encode_name for field in msgspec.structs.fields(Config))

# Orthanc 1.10.1 options that fastpacs accepts and ignores (warned about once).
IGNORED_ORTHANC_OPTIONS = frozenset(
    {
        "Plugins",
        "HttpVerbose",
        "HttpProxy",
        "HttpThreadsCount",
        "KeepAlive",
        "KeepAliveTimeout",
        "TcpNoDelay",
        "SslMinimumProtocolVersion",
        "SslVerifyPeers",
        "SslTrustedClientCertificates",
        "SslCiphersAccepted",
        "DicomAssociationCloseDelay",
        "DicomThreadsCount",
        "StoreMD5ForAttachments",
        "SynchronousCMove",
        "StorageAccessOnFind",
        "TranscodeDicomProtocol",
        "BuiltinDecoderTranscoderOrder",
        "SyncStorageArea",
        "DeidentifyLogs",
        "DeidentifyLogsDicomVersion",
        "MaximumStorageMode",
        "MaximumStorageCacheSize",
        "DatabaseServerIdentifier",
        "LimitJobs",
        "StoreDicom",
        "DicomEchoChecksFind",
        "ExtraMainDicomTags",
        "Warnings",
        "ZipLoaderThreads",
        "DicomWeb",
        "Worklists",
        "Serve",
        "OrthancExplorerEnabled",
        "WebDav",
        "Gdcm",
        "Transfers",
        "PostgreSQL",
        "MySQL",
        "Odbc",
    }
)

_COMMENT_OR_STRING = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def strip_comments(text: str) -> str:
    """Remove ``//`` and ``/* */`` comments outside JSON strings, as Orthanc's parser allows."""
    return _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)


def _read_json_with_comments(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(strip_comments(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read the configuration file {path}: {error}") from error
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise ConfigurationError(f"{path} must contain a JSON object")
    return document


def _environment_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``FASTPACS__HTTP_PORT`` → ``{"HttpPort": ...}``, matching option names case-insensitively."""
    by_folded_name = {name.replace("_", "").lower(): name for name in KNOWN_OPTIONS}
    overrides: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENVIRONMENT_PREFIX):
            continue
        folded = key.removeprefix(ENVIRONMENT_PREFIX).replace("_", "").lower()
        name = by_folded_name.get(folded)
        if name is None:
            logger.warning("ignoring environment variable %s: no such option", key)
            continue
        try:
            overrides[name] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[name] = raw
    return overrides


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read a configuration file or folder, apply environment overrides, validate."""
    document: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            for part in sorted(path.glob("*.json")):
                document.update(_read_json_with_comments(part))
        elif path.exists():
            document = _read_json_with_comments(path)
        else:
            raise ConfigurationError(f"configuration file not found: {path}")
    document.update(_environment_overrides(dict(os.environ if environ is None else environ)))

    for name in sorted(document.keys() - KNOWN_OPTIONS):
        if name in IGNORED_ORTHANC_OPTIONS:
            logger.warning("configuration option %r is not supported by fastpacs and is ignored", name)
        else:
            logger.warning("unknown configuration option %r is ignored", name)
    try:
        config = msgspec.convert(document, Config, strict=True)
    except msgspec.ValidationError as error:
        raise ConfigurationError(f"invalid configuration: {error}") from error
    return config


def encode_config(config: Config) -> bytes:
    """The configuration as JSON, to hand it to the server process."""
    return msgspec.json.encode(config)


def decode_config(data: bytes) -> Config:
    return msgspec.json.decode(data, type=Config)
