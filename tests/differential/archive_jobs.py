"""Archive-type jobs (Archive, Media) of both servers: waiting for them, comparing their JSON."""

import re
import time
from typing import Any

import httpx

JOB_TIME = re.compile(r"^\d{8}T\d{6}\.\d{6}$")
JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
JOB_TIMEOUT = 30.0


def wait_success(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job's JSON once it succeeded; AssertionError after :data:`JOB_TIMEOUT`."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["State"] == "Success":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not succeed")


def normalized_job(job: dict[str, Any]) -> dict[str, Any]:
    """The job with what varies by nature replaced, once its format is checked.

    Orthanc deflates the archive, fastpacs stores its entries: the archive sizes differ by design.
    """
    normalized = dict(job)
    assert JOB_ID.match(job["ID"])
    for key in ("CreationTime", "CompletionTime", "Timestamp"):
        assert JOB_TIME.match(job[key]), (key, job[key])
        normalized[key] = "<time>"
    assert isinstance(job["EffectiveRuntime"], float)
    normalized["ID"] = normalized["EffectiveRuntime"] = "<varies>"
    content = dict(job["Content"])
    assert int(content.pop("ArchiveSize")) > 0
    assert isinstance(content.pop("ArchiveSizeMB"), int)
    normalized["Content"] = content
    return normalized
