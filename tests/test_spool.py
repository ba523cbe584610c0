"""Modified files handed from the workers to the server through the spool folder (pool/spool.py)."""

from pathlib import Path

import httpx
import pytest

from fastpacs.dicom.modification_request import parse_anonymize_request
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.pool import modify as pool_modify
from fastpacs.pool import spool, tasks
from fastpacs.pool.modify import modify_stored
from fastpacs.storage.blobs import TEMPORARY_FOLDER, BlobStore
from fastpacs.testing import ServerProcess
from tests.conftest import dicom_variant


def test_spooled_files_are_read_once_and_removed(tmp_path: Path) -> None:
    paths = [spool.write(str(tmp_path), b"first"), None, spool.write(str(tmp_path), b"")]
    assert spool.take(paths) == [b"first", None, b""]
    assert list(tmp_path.iterdir()) == []


def test_a_worker_failing_half_way_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    good = storage.put(dicom_variant(instance="spool")).digest
    folder = tmp_path / "spool"
    folder.mkdir()
    modification = parse_anonymize_request({}).modification
    spooled = modify_stored(modification, [good, bytes(32), good], "Latin1", None, str(folder))
    assert spooled[1] is None and len(list(folder.iterdir())) == 2  # bytes(32): a blob deleted meanwhile
    spool.discard(spooled)
    calls = []

    def second_fails(*args: object) -> bytes:
        calls.append(args)
        if len(calls) == 2:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT)
        return b"modified"

    monkeypatch.setattr(pool_modify, "modify_file", second_fails)
    with pytest.raises(OrthancError):
        modify_stored(modification, [good, good, good], "Latin1", None, str(folder))
    assert len(calls) == 2 and list(folder.iterdir()) == []


def test_anonymizing_a_study_leaves_no_spooled_file(server: ServerProcess, client: httpx.Client) -> None:
    study = "1.2.826.0.1.3680043.8.498.spool"
    for number in range(8):
        answer = client.post("/instances", content=dicom_variant(study=study, instance=f"spool{number}"))
        assert answer.status_code == 200
    study_id = client.get(f"/instances/{answer.json()['ID']}/study").json()["ID"]
    anonymized = client.post(f"/studies/{study_id}/anonymize", json={})
    assert anonymized.status_code == 200
    assert len(client.get(f"/studies/{anonymized.json()['ID']}/instances").json()) == 8
    temporary = Path(server.directory) / "storage" / TEMPORARY_FOLDER
    assert not [path for path in temporary.iterdir() if path.name.startswith(spool.PREFIX)]
