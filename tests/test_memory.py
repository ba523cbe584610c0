"""Memory held by the server and its workers: caches bounded as configured, nothing kept twice."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastpacs.config import ConfigurationError, load_config
from fastpacs.pool import images, tasks
from fastpacs.storage.blobs import BlobStore
from fastpacs.testing import fastpacs_server
from tests.conftest import dicom_variant

MEGABYTE = 1024 * 1024


def test_the_rendered_cache_size_is_an_option_in_megabytes(tmp_path: Path) -> None:
    assert load_config(None, environ={}).rendered_cache_size == 32
    assert load_config(None, environ={"FASTPACS__RENDERED_CACHE_SIZE": "0"}).rendered_cache_size == 0
    with pytest.raises(ConfigurationError, match="RenderedCacheSize cannot be negative"):
        load_config(None, environ={"FASTPACS__RENDERED_CACHE_SIZE": "-1"})


@pytest.fixture
def worker_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BlobStore:
    """This process as a worker: its storage set, as :func:`tasks.initialize` does."""
    storage = BlobStore(tmp_path / "storage")
    monkeypatch.setattr(tasks, "_storage", storage)
    return storage


def test_a_worker_keeps_each_parsed_file_once_and_within_its_budget(worker_storage: BlobStore) -> None:
    files = [dicom_variant(instance=str(number)) for number in range(4)]
    blobs = [worker_storage.put(data) for data in files]
    parsed = images._ParsedFiles(maximum_bytes=2 * len(files[0]))
    for blob in blobs:
        dataset, description = parsed.get(blob, native=False)
        assert description is not None and description.rows == 128
        assert dataset.buffer is None  # pydicom's copy of the file is not kept beside the parsed values
    assert len(parsed._entries) == 2 and parsed.size <= parsed.maximum_bytes
    assert parsed.get(blobs[-1])[0] is parsed.get(blobs[-1])[0]  # the last file is parsed once
    for blob in blobs:  # plain native files: kept as their bytes, read without pydicom
        assert isinstance(parsed.get(blob)[0], images.NativeImage)
    assert len(parsed._entries) == 2 and parsed.size <= parsed.maximum_bytes


@pytest.fixture(scope="module")
def uncached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    process = fastpacs_server(tmp_path_factory.mktemp("uncached"), {"RenderedCacheSize": 0}).start()
    try:
        with httpx.Client(base_url=process.base_url, timeout=30) as client:
            yield client
    finally:
        process.stop()


def _cached_answers(client: httpx.Client) -> float:
    for line in client.get("/tools/metrics-prometheus").text.splitlines():
        if line.startswith("orthanc_dicom_cache_count "):
            return float(line.split()[1])
    raise AssertionError("orthanc_dicom_cache_count is missing")


def test_a_rendered_cache_size_of_zero_renders_every_time(uncached_server: httpx.Client) -> None:
    client = uncached_server
    identifier = client.post("/instances", content=dicom_variant(instance="uncached")).json()["ID"]
    for suffix in ("preview", "frames/0/image-uint8", "frames/0/image-uint16"):
        first = client.get(f"/instances/{identifier}/{suffix}", headers={"Accept": "image/png"})
        again = client.get(f"/instances/{identifier}/{suffix}", headers={"Accept": "image/png"})
        assert first.status_code == again.status_code == 200
        assert first.content == again.content and first.content.startswith(b"\x89PNG")
    assert _cached_answers(client) == 0


def test_rendered_answers_are_cached_under_everything_they_ask_for(client: httpx.Client) -> None:
    """/rendered shares the rendered cache: one entry per frame, window, size, format and quality."""
    identifier = client.post("/instances", content=dicom_variant(instance="rendered-cache")).json()["ID"]
    before = _cached_answers(client)
    windowed = f"/instances/{identifier}/rendered?window-center=40&window-width=400"
    first, again = client.get(windowed), client.get(windowed)
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert _cached_answers(client) == before + 1
    narrower = client.get(f"/instances/{identifier}/rendered?window-center=40&window-width=80")
    assert narrower.status_code == 200 and narrower.content != first.content
    jpeg = client.get(windowed, headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert client.get(
        f"/instances/{identifier}/frames/0/rendered?window-center=40&window-width=400"
    ).content == (first.content)
    assert _cached_answers(client) == before + 3  # frame 0 asked either way is the same entry


def test_malloc_arena_max_is_orthanc_s_option_with_a_default_of_two() -> None:
    assert load_config(None, environ={}).malloc_arena_max == 2
    assert load_config(None, environ={"FASTPACS__MALLOC_ARENA_MAX": "0"}).malloc_arena_max == 0
    with pytest.raises(ConfigurationError, match="MallocArenaMax cannot be negative"):
        load_config(None, environ={"FASTPACS__MALLOC_ARENA_MAX": "-1"})


ARENAS_OF_EIGHT_THREADS = """
import ctypes, sys, threading
from fastpacs.malloc import limit_arenas
limit_arenas(int(sys.argv[1]))
started = threading.Barrier(8)
def allocate():
    started.wait()  # all alive at once: none can inherit the arena of one that ended
    blocks = [bytearray(4096) for _ in range(64)]
    started.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
"""


@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (0, min(9, 8 * (os.cpu_count() or 1)))])
def test_limit_arenas_bounds_the_arenas_threads_get(limit: int, expected: int) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", ARENAS_OF_EIGHT_THREADS, str(limit)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert finished.stderr.count("Arena ") == expected


FILES_READ_AND_WRITTEN = """
import resource, sys
from fastpacs.malloc import keep_file_buffers
if sys.argv[1] == "kept":
    assert keep_file_buffers()
source = bytes(600_000)
def modified_file():  # a read file, its modified copy and the two freed: what every worker task does
    read = bytearray(source)
    written = b"".join((bytes(read[:1000]), bytes(read[1000:])))
    return len(written)
for _ in range(20):
    modified_file()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    modified_file()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.parametrize("buffers", ["kept", "default"])
def test_freed_file_buffers_are_reused_without_page_faults(buffers: str) -> None:
    """With glibc's defaults each file-sized block freed goes back to the system and its memory comes
    back as new pages (about 150 faults for 600 KB); kept, the 200 files cost next to none."""
    finished = subprocess.run(
        [sys.executable, "-c", FILES_READ_AND_WRITTEN, buffers], capture_output=True, text=True, check=True
    )
    faults = int(finished.stdout)
    if buffers == "kept":
        assert faults < 200
    else:
        assert faults > 200 * 100  # what the kept buffers spare
