"""The services of one running server, created at start-up and handed to the controllers."""

from dataclasses import dataclass, field

from fastpacs.config import Config
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.engine import JobEngine
from fastpacs.lua.engine import LuaEngine
from fastpacs.metrics import ServerMetrics
from fastpacs.net.server import DicomServer
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.archive import ArchiveService
from fastpacs.services.attachments import AttachmentService
from fastpacs.services.bulk import BulkService
from fastpacs.services.changes import ChangeService, StabilityMonitor
from fastpacs.services.content import ContentService
from fastpacs.services.create import CreateService
from fastpacs.services.delete import DeleteService
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.exports import ExportLog, ModalityExports
from fastpacs.services.find import FindService
from fastpacs.services.images import ImageService
from fastpacs.services.ingest import IngestService
from fastpacs.services.lifecycle import ServerLifecycle
from fastpacs.services.log_levels import LogLevels
from fastpacs.services.media import MediaService
from fastpacs.services.metadata import MetadataService
from fastpacs.services.modalities import ModalityRegistry
from fastpacs.services.modify import ModifyService
from fastpacs.services.peers import PeerService
from fastpacs.services.protection import ProtectionService
from fastpacs.services.queries import QueryService
from fastpacs.services.reconstruct import ReconstructService
from fastpacs.services.rendered import RenderedService
from fastpacs.services.resource_tags import ResourceTagsService
from fastpacs.services.resources import ResourceService
from fastpacs.services.slices import SliceService
from fastpacs.services.statistics import StatisticsService
from fastpacs.services.storage_commitment import StorageCommitmentService
from fastpacs.storage.blobs import BlobStore
from fastpacs.storage.lock import StoreLock


@dataclass
class Services:
    config: Config
    database: Database
    storage: BlobStore
    writer: IndexWriter
    pool: WorkerPool
    ingest: IngestService
    resources: ResourceService
    deletes: DeleteService
    changes: ChangeService
    stability: StabilityMonitor
    default_encoding: DefaultEncoding
    content: ContentService
    creator: CreateService
    images: ImageService
    find: FindService
    modalities: ModalityRegistry
    exports: ExportLog
    modality_exports: ModalityExports
    queries: QueryService
    dicom_server: DicomServer
    modify: ModifyService
    metadata: MetadataService
    attachments: AttachmentService
    statistics: StatisticsService
    protection: ProtectionService
    resource_tags: ResourceTagsService
    slices: SliceService
    bulk: BulkService
    log_levels: LogLevels
    lifecycle: ServerLifecycle
    rendered: RenderedService
    reconstruct: ReconstructService
    metrics: ServerMetrics
    store_lock: StoreLock
    jobs: JobEngine
    archives: ArchiveService
    media: MediaService
    peers: PeerService
    lua: LuaEngine = field(init=False)
    """Created once the other services exist (it hooks into several of them)."""
    storage_commitment: StorageCommitmentService = field(init=False)
    """Created once the jobs and deletes exist; the DICOM server serves its N-ACTION and N-EVENT-REPORT."""
