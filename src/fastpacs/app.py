"""The Litestar application and its lifespan: start and stop of every component.

Start-up order: storage and index, start-up repair, index writer, worker
pool, services, stability monitor. Shutdown runs in reverse.
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from fastpacs.api.archive import ARCHIVE_HANDLERS
from fastpacs.api.attachments import attachment_handlers
from fastpacs.api.bulk import BULK_HANDLERS
from fastpacs.api.content import (
    get_default_encoding,
    instance_content,
    instance_content_other_methods,
    instance_content_root,
    instance_header,
    instance_pdf,
    instance_simplified_tags,
    instance_tags,
    set_default_encoding,
)
from fastpacs.api.errors import EXCEPTION_HANDLERS
from fastpacs.api.exports import EXPORT_HANDLERS
from fastpacs.api.fast_lane import fast_lane_installer
from fastpacs.api.find import find
from fastpacs.api.home import HOME_HANDLERS, openapi_config
from fastpacs.api.http_conventions import http_conventions_installer
from fastpacs.api.images import IMAGE_HANDLERS
from fastpacs.api.instance_export import export_instance
from fastpacs.api.instances import instance_file, upload_instances
from fastpacs.api.jobs import JOB_HANDLERS
from fastpacs.api.lua import LUA_HANDLERS, lua_installer
from fastpacs.api.metadata import metadata_handlers
from fastpacs.api.metrics import metrics_enabled, metrics_prometheus, set_metrics_enabled
from fastpacs.api.modalities import MODALITY_HANDLERS
from fastpacs.api.modify import MODIFY_HANDLERS
from fastpacs.api.peers import PEER_HANDLERS
from fastpacs.api.queries import QUERY_HANDLERS
from fastpacs.api.reconstruct import RECONSTRUCT_HANDLERS
from fastpacs.api.rendered import RENDERED_HANDLERS
from fastpacs.api.resource_helpers import RESOURCE_HELPER_HANDLERS
from fastpacs.api.resources import resource_router
from fastpacs.api.security import access_control_installer
from fastpacs.api.server_tools import SERVER_TOOL_HANDLERS
from fastpacs.api.storage_commitment import STORAGE_COMMITMENT_HANDLERS
from fastpacs.api.system import changes, clear_changes, statistics, system
from fastpacs.api.timeouts import BodyDeadlines, RequestBodyTimeout
from fastpacs.api.timing import RequestTiming
from fastpacs.api.tools import create_dicom, lookup
from fastpacs.config import CONFIG_ENVIRONMENT_VARIABLE, Config, decode_config, load_config
from fastpacs.dicom.dictionary import install as install_dictionary
from fastpacs.dicom.ids import Level
from fastpacs.imaging.cache import RenderedCache
from fastpacs.imaging.warmup import prepare_kernel_cache
from fastpacs.index.database import Database
from fastpacs.index.writer import IndexWriter
from fastpacs.jobs.engine import JobEngine
from fastpacs.logs import configure_logging
from fastpacs.lua.engine import LuaEngine
from fastpacs.malloc import limit_arenas
from fastpacs.metrics import ServerMetrics
from fastpacs.net.server import DicomServer
from fastpacs.pool.pool import WorkerPool
from fastpacs.services.archive import ArchiveService
from fastpacs.services.attachments import AttachmentService
from fastpacs.services.bulk import BulkService
from fastpacs.services.changes import ChangeService, StabilityMonitor
from fastpacs.services.consistency import repair_storage
from fastpacs.services.content import ContentService
from fastpacs.services.create import CreateService
from fastpacs.services.delete import DeleteService
from fastpacs.services.encoding import DefaultEncoding
from fastpacs.services.exports import ExportLog, ModalityExports
from fastpacs.services.find import FindService
from fastpacs.services.images import ImageService
from fastpacs.services.ingest import IngestService, ingest_transcoding
from fastpacs.services.lifecycle import ServerLifecycle
from fastpacs.services.log_levels import LogLevels
from fastpacs.services.media import MediaService
from fastpacs.services.metadata import MetadataService
from fastpacs.services.modalities import load_registry
from fastpacs.services.modify import ModifyService
from fastpacs.services.peers import PeerService, load_peers
from fastpacs.services.protection import ProtectionService
from fastpacs.services.queries import LocalQueryRetrieve, QueryService
from fastpacs.services.reconstruct import ReconstructService
from fastpacs.services.registry import Services
from fastpacs.services.rendered import RenderedService
from fastpacs.services.resource_tags import ResourceTagsService
from fastpacs.services.resources import ResourceService
from fastpacs.services.slices import SliceService
from fastpacs.services.statistics import StatisticsService
from fastpacs.services.storage_commitment import StorageCommitmentService
from fastpacs.storage.blobs import BlobStore
from fastpacs.storage.lock import StoreLock

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
STARTUP_FAILED = 3
"""Exit status of the server process when a component cannot start."""

STORE_LOCK_WAIT = 10.0
"""Seconds a starting server waits for the store lock (a killed predecessor may still be exiting)."""


async def start_services(
    config: Config, metrics: ServerMetrics | None = None, lock_wait: float = STORE_LOCK_WAIT
) -> Services:
    """Open the store (locked against other processes) and start every component."""
    store_lock = StoreLock(config.index_path, config.storage_path)
    await asyncio.to_thread(store_lock.acquire, lock_wait)
    metrics = metrics or ServerMetrics(config.metrics_enabled)
    storage = BlobStore(config.storage_path, compression=config.storage_compression)
    database = Database(config.index_path, config.index_map_size)
    metrics.watch_startup_repair(await asyncio.to_thread(repair_storage, database, storage))
    writer = IndexWriter(database, storage, metrics)
    writer.start()
    await asyncio.to_thread(prepare_kernel_cache)  # before the pool: workers load the compiled kernels
    user_dictionary = config.user_dictionary
    install_dictionary(user_dictionary)  # for this process; the workers install it at their start
    pool = WorkerPool(config.worker_processes, storage, user_dictionary)
    await asyncio.to_thread(pool.warm_up)
    default_encoding = DefaultEncoding(config.default_encoding)
    ingest = IngestService(
        pool,
        writer,
        default_encoding,
        config.maximum_upload_size * MEGABYTE,
        metrics,
        pending_limit=config.maximum_pending_ingest_size * MEGABYTE,
        transcoding=ingest_transcoding(config),
    )
    modalities = await load_registry(config, database, writer)
    export_log = ExportLog(database, writer, config.log_exported_resources)
    local_query_retrieve = LocalQueryRetrieve(config, database, storage, default_encoding)
    dicom_server = DicomServer(
        config, modalities, ingest, local_query_retrieve, asyncio.get_running_loop(), metrics=metrics
    )
    jobs = JobEngine(database, writer, config.concurrent_jobs, config.jobs_history_size, config.save_jobs)
    archives = ArchiveService(database, storage, jobs, retained_outputs=config.media_archive_size)
    rendered_cache = RenderedCache(config.rendered_cache_size * MEGABYTE)
    content = ContentService(database, pool, default_encoding)
    services = Services(
        config=config,
        database=database,
        storage=storage,
        writer=writer,
        pool=pool,
        ingest=ingest,
        resources=ResourceService(database),
        deletes=DeleteService(writer),
        changes=ChangeService(database, writer),
        stability=StabilityMonitor(database, writer, config.stable_age),
        default_encoding=default_encoding,
        content=content,
        creator=CreateService(database, pool, ingest, default_encoding, content),
        metadata=MetadataService(database, writer, config.user_metadata, config.check_revisions),
        images=ImageService(database, pool, rendered_cache),
        find=FindService(database, config.limit_find_results, config.limit_find_instances),
        modalities=modalities,
        exports=export_log,
        modality_exports=ModalityExports(
            config, database, storage, registry=modalities, log=export_log, engine=jobs
        ),
        queries=QueryService(config, modalities, default_encoding, jobs),
        dicom_server=dicom_server,
        attachments=AttachmentService(
            database, writer, storage, config.user_content_type, config.check_revisions
        ),
        statistics=StatisticsService(database),
        protection=ProtectionService(database, writer),
        slices=SliceService(database),
        resource_tags=ResourceTagsService(database, pool, default_encoding, content),
        log_levels=LogLevels(),
        bulk=BulkService(
            database,
            writer,
            MetadataService(database, writer, config.user_metadata, config.check_revisions),
        ),
        lifecycle=ServerLifecycle(config.rest_api_reset_enabled, config.rest_api_shutdown_enabled),
        rendered=RenderedService(database, pool, rendered_cache),
        reconstruct=ReconstructService(database, writer, pool, default_encoding),
        modify=ModifyService(
            database,
            writer,
            pool,
            ingest,
            default_encoding,
            lossy_quality=config.dicom_lossy_transcoding_quality,
            engine=jobs,
        ),
        metrics=metrics,
        store_lock=store_lock,
        jobs=jobs,
        archives=archives,
        media=MediaService(archives, pool),
        peers=PeerService(
            config,
            database,
            storage,
            pool,
            registry=await load_peers(config, database, writer),
            log=export_log,
            engine=jobs,
        ),
    )
    services.storage_commitment = StorageCommitmentService(
        config, database, registry=modalities, engine=jobs, deletes=services.deletes
    )
    dicom_server.serve_storage_commitment(services.storage_commitment)
    services.modality_exports.commit = services.storage_commitment.request_sent
    metrics.watch(database, pool, services.images.cache)
    metrics.watch_ingest(ingest.pending)
    metrics.watch_jobs(jobs)
    services.lua = LuaEngine(services)
    await services.lua.start()  # before the jobs (its job type) and the DICOM server (its filter)
    services.stability.start()
    await jobs.start()  # after every service has registered its job types
    services.archives.remove_unreferenced_outputs()
    if config.dicom_server_enabled:
        await asyncio.to_thread(dicom_server.start)
    logger.info("fastpacs started: %d worker processes", pool.processes)
    return services


async def stop_services(services: Services) -> None:
    await services.lua.stop()
    await services.jobs.stop()
    await services.peers.close()
    await asyncio.to_thread(services.dicom_server.stop)
    await services.stability.stop()
    await asyncio.to_thread(services.pool.close)
    await asyncio.to_thread(services.writer.stop)
    services.database.close()
    services.store_lock.release()


def _provide_services(state: State) -> Services:
    return state.services


def create_app(config: Config | None = None) -> Litestar:
    """The application; without ``config``, the one ``fastpacs serve`` put in the environment."""
    if config is None:
        encoded = os.environ.get(CONFIG_ENVIRONMENT_VARIABLE)
        config = decode_config(encoded.encode()) if encoded else load_config(None)
    configure_logging(config.log_level)
    limit_arenas(config.malloc_arena_max)  # before the lifespan starts the server's threads
    metrics = ServerMetrics(config.metrics_enabled)
    body_deadlines = BodyDeadlines()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            app.state.services = await start_services(config, metrics)
        except Exception:  # whatever stops the start must stop the server, not hang it
            # Granian keeps its process alive after a failed lifespan, answering nothing: exit instead.
            logger.exception("fastpacs could not start")
            os._exit(STARTUP_FAILED)
        try:
            yield
        finally:
            await stop_services(app.state.services)

    def request_timing(app):
        return RequestTiming(app, metrics)

    def request_body_timeout(app):
        return RequestBodyTimeout(app, config.http_request_timeout, body_deadlines)

    return Litestar(
        route_handlers=[
            *(resource_router(level) for level in Level),
            *(handler for level in Level for handler in metadata_handlers(level)),
            *(handler for level in Level for handler in attachment_handlers(level)),
            *RESOURCE_HELPER_HANDLERS,
            *ARCHIVE_HANDLERS,
            *JOB_HANDLERS,
            *LUA_HANDLERS,
            export_instance,
            *BULK_HANDLERS,
            *SERVER_TOOL_HANDLERS,
            *HOME_HANDLERS,
            *RENDERED_HANDLERS,
            *RECONSTRUCT_HANDLERS,
            upload_instances,
            instance_file,
            system,
            statistics,
            changes,
            clear_changes,
            lookup,
            create_dicom,
            instance_tags,
            instance_simplified_tags,
            instance_header,
            instance_content_root,
            instance_content,
            instance_content_other_methods,
            instance_pdf,
            get_default_encoding,
            set_default_encoding,
            *IMAGE_HANDLERS,
            find,
            *MODALITY_HANDLERS,
            *STORAGE_COMMITMENT_HANDLERS,
            *QUERY_HANDLERS,
            *EXPORT_HANDLERS,
            *MODIFY_HANDLERS,
            *PEER_HANDLERS,
            metrics_prometheus,
            metrics_enabled,
            set_metrics_enabled,
        ],
        dependencies={"services": Provide(_provide_services, sync_to_thread=False, use_cache=True)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        middleware=[request_timing, request_body_timeout],
        state=State({"config": config}),
        request_max_body_size=config.maximum_upload_size * MEGABYTE,
        openapi_config=openapi_config(),
        # Wrapped in this order: HTTP conventions, then access control, then the Lua filter, then the
        # fast lane, then the router.
        on_startup=[
            fast_lane_installer(metrics, body_deadlines),
            lua_installer(),
            access_control_installer(config),
            http_conventions_installer(config.http_compression_enabled),
        ],
        debug=False,
    )
