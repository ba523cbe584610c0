"""The commands of Lua callbacks (SendToModality, Delete...), run in a ``SequenceOfOperations`` job.

A callback lists operations in ``_job`` (see ``prelude.lua``); once it has
returned, they run in one job, one step per operation, in order. Each
operation works on instances: those below the resource it names, or, when
it names ``''``, those the operation before it produced. As in Orthanc:

=============  =================================================  ==================
operation      what it does with each instance                    produces
=============  =================================================  ==================
store-scu      C-STORE to ``Modality`` (from ``LocalAet``)        the instances sent
store-peer     ``POST /instances`` to ``Peer``                    the instances sent
delete         deletes it                                         nothing
modify         stores a modified copy (``Replace``, ``Remove``,   the copies
               ``RemovePrivateTags``), origin ``Lua``
call-system    runs ``Command Arguments... file.dcm``             the instances
=============  =================================================  ==================

An instance an operation fails on is logged and left out of what the
operation produces: ``Delete(SendToModality(id, 'pacs'))`` deletes only
what reached the PACS. The job itself succeeds. ``call-system`` starts a
process, so it runs only when ``LuaUnsafeLibrariesEnabled`` is set.
"""

import asyncio
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from fastpacs.dicom.ids import Level, RawId, format_id, parse_id
from fastpacs.errors import OrthancError
from fastpacs.jobs.job import Job
from fastpacs.services.exports import StoreRequest
from fastpacs.services.ingest import LUA_ORIGIN
from fastpacs.storage.blobs import StoredBlob

if TYPE_CHECKING:
    from fastpacs.services.registry import Services

logger = logging.getLogger(__name__)

SYSTEM_CALL_TIMEOUT = 300
"""Seconds a ``CallSystem`` command may run for one instance."""


class Operation(msgspec.Struct, array_like=True):
    """One command of a callback."""

    name: str
    """``store-scu``, ``store-peer``, ``delete``, ``modify`` or ``call-system``."""
    instances: list[RawId] | None
    """The instances to work on; ``None``: those the previous operation produced."""
    parameters: dict[str, Any]
    """The other fields of the command, by Orthanc's names (``Modality``, ``Replace``...)."""


class OperationsState(msgspec.Struct, array_like=True):
    operations: list[Operation]
    produced: list[RawId] = msgspec.field(default_factory=list)
    """What the last operation run produced."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OperationsState)


class LuaOperationsJob(Job):
    """Orthanc's ``SequenceOfOperations`` job, made of the commands of one callback."""

    type_name = "SequenceOfOperations"

    def __init__(self, state: OperationsState, runner: "LuaOperations"):
        self.state = state
        self.runner = runner

    @property
    def total_steps(self) -> int:
        return len(self.state.operations)

    async def run_step(self, index: int) -> None:
        operation = self.state.operations[index]
        inputs = self.state.produced if operation.instances is None else operation.instances
        self.state.produced = await self.runner.apply(operation, inputs)

    def content(self) -> dict[str, Any]:
        return {"CountOperations": len(self.state.operations), "Description": "Lua"}

    def save(self) -> bytes:
        return _encoder.encode(self.state)


class LuaOperations:
    """Turns the ``_job`` of a callback into a job, and applies its operations with the services."""

    def __init__(self, services: "Services", system_calls_allowed: bool):
        self.services = services
        self.system_calls_allowed = system_calls_allowed
        services.jobs.register(LuaOperationsJob.type_name, self._load)

    def _load(self, data: bytes) -> LuaOperationsJob:
        return LuaOperationsJob(_decoder.decode(data), self)

    def prepare(self, commands: list[dict[str, Any]]) -> LuaOperationsJob | None:
        """The job of a callback's commands (``None`` when there are none).

        Resources are resolved to their instances now, as Orthanc does when the job is submitted.
        """
        operations = []
        for command in commands:
            parameters = {
                key: value for key, value in command.items() if key not in ("Operation", "Resource")
            }
            resource = command.get("Resource")
            instances = None if resource == "" else self._instances_below(resource)
            operations.append(Operation(str(command.get("Operation")), instances, parameters))
        return LuaOperationsJob(OperationsState(operations), self) if operations else None

    def _instances_below(self, resource: Any) -> list[RawId]:
        rid = parse_id(resource) if isinstance(resource, str) else None
        with self.services.database.read() as view:
            record = None if rid is None else view.resource(rid)
            if record is None:
                logger.error("Lua: unknown resource %r in a job command", resource)
                return []
            return view.descendants(rid, Level(record.level), Level.INSTANCE)

    async def apply(self, operation: Operation, instances: list[RawId]) -> list[RawId]:
        parameters = operation.parameters
        if operation.name == "store-scu":
            return await self._store_scu(instances, parameters.get("Modality"), parameters.get("LocalAet"))
        if operation.name == "store-peer":
            return await self._store_peer(instances, parameters.get("Peer"))
        if operation.name == "delete":
            return await self._delete(instances)
        if operation.name == "modify":
            return await self._modify(instances, parameters)
        if operation.name == "call-system":
            return await self._call_system(instances, parameters.get("Command"), parameters.get("Arguments"))
        logger.error("Lua: unknown job operation %r", operation.name)
        return []

    async def _store_scu(self, instances: list[RawId], modality: Any, local_aet: Any) -> list[RawId]:
        if not isinstance(modality, str):
            logger.error("Lua: SendToModality() needs the symbolic name of a modality")
            return []
        request = StoreRequest(
            resources=[format_id(rid) for rid in instances],
            local_aet=local_aet if isinstance(local_aet, str) else None,
        )
        try:
            job = await self.services.modality_exports.prepare(modality, request)
        except OrthancError as error:
            logger.error("Lua: Unable to send to modality %s: %s", modality, error)
            return []
        sent = []
        await job.start(0)
        try:
            for index, rid in enumerate(instances):
                try:
                    await job.run_step(index)
                except OrthancError as error:
                    logger.error(
                        "Lua: Unable to send instance %s to modality %s: %s", format_id(rid), modality, error
                    )
                else:
                    sent.append(rid)
        finally:
            await job.finish()
        return sent

    async def _store_peer(self, instances: list[RawId], name: Any) -> list[RawId]:
        peers = self.services.peers
        peer = peers.registry.get(name) if isinstance(name, str) else None
        if peer is None:
            logger.error("Lua: Unable to send to peer %r: no such peer", name)
            return []
        sent = []
        for rid, instance in zip(instances, await asyncio.to_thread(peers.resolve, instances), strict=True):
            if instance is None:
                logger.error("Lua: Unable to send instance %s: it no longer exists", format_id(rid))
                continue
            try:
                await peers.log.log([(Level.INSTANCE, rid)], name)
                await peers.send_instance(peer, rid, instance, compress=False, transfer_syntax=None)
            except OrthancError as error:
                logger.error("Lua: Unable to send instance %s to peer %s: %s", format_id(rid), name, error)
            else:
                sent.append(rid)
        return sent

    async def _delete(self, instances: list[RawId]) -> list[RawId]:
        for rid in instances:
            logger.info("Lua: Deleting instance: %s", format_id(rid))
            try:
                await self.services.deletes.delete(Level.INSTANCE, rid)
            except KeyError:
                logger.error("Lua: Unable to delete instance %s: it no longer exists", format_id(rid))
        return []

    async def _modify(self, instances: list[RawId], parameters: dict[str, Any]) -> list[RawId]:
        body = msgspec.json.encode(
            {
                key: value
                for key, value in parameters.items()
                if key in ("Replace", "Remove", "RemovePrivateTags")
            }
        )
        modified = []
        for rid in instances:
            logger.info("Lua: Modifying instance %s", format_id(rid))
            try:
                data = await self.services.modify.modify_instance(rid, body)
                outcome = await self.services.ingest.ingest(data, LUA_ORIGIN)
            except OrthancError as error:
                logger.error("Lua: Unable to modify instance %s: %s", format_id(rid), error)
            else:
                modified.append(outcome.ids[Level.INSTANCE])
        return modified

    async def _call_system(self, instances: list[RawId], command: Any, arguments: Any) -> list[RawId]:
        if not self.system_calls_allowed:
            logger.error("Lua: CallSystem() is refused: it needs LuaUnsafeLibrariesEnabled")
            return []
        if not isinstance(command, str):
            logger.error("Lua: CallSystem() needs a command")
            return []
        extra = [str(argument) for argument in arguments] if isinstance(arguments, list) else []
        done = []
        for rid in instances:
            blob = self.services.resources.instance_blob(rid)
            if blob is None:
                continue
            try:
                await asyncio.to_thread(self._run_command, command, extra, self.services.storage.read, blob)
            except (OSError, subprocess.SubprocessError) as error:
                logger.error("Lua: Failed system call - %s on %s: %s", command, format_id(rid), error)
            else:
                done.append(rid)
        return done

    @staticmethod
    def _run_command(command: str, arguments: list[str], read, blob: StoredBlob) -> None:
        with tempfile.TemporaryDirectory(prefix="fastpacs-lua-") as folder:
            path = Path(folder) / "instance.dcm"
            path.write_bytes(read(blob))
            logger.info("Lua: System call: %s %s", command, " ".join([*arguments, str(path)]))
            subprocess.run([command, *arguments, str(path)], check=True, timeout=SYSTEM_CALL_TIMEOUT)
