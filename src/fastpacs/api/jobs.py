"""/jobs: the list of jobs, one job, its actions and its outputs.

As Orthanc 1.10.1: an unknown job is an empty 404 for ``GET /jobs/{id}``
and an empty 400 for an action; an action the job's state refuses is an
empty 400; an accepted action answers ``{}``.
"""

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import File

from fastpacs.api.responses import empty_object, flag, json_response
from fastpacs.errors import BareHttpError, ErrorCode, OrthancError
from fastpacs.services.registry import Services

ACTIONS = ("pause", "resume", "cancel", "resubmit")


@get("/jobs", name="jobs-list")
async def list_jobs(request: Request, services: Services) -> Response[bytes]:
    engine = services.jobs
    if flag(request, "expand"):
        return json_response([engine.get(job_id).to_json() for job_id in engine.job_ids()])
    return json_response(engine.job_ids())


@get("/jobs/{job_id:str}", name="jobs-get")
async def get_job(job_id: str, services: Services) -> Response[bytes]:
    tracked = services.jobs.get(job_id)
    if tracked is None:
        raise BareHttpError(404)
    return json_response(tracked.to_json())


@get("/jobs/{job_id:str}/{output:str}", name="jobs-output")
async def job_output(job_id: str, output: str, services: Services) -> File:
    return _output(job_id, output, services)


def _output(job_id: str, output: str, services: Services) -> File:
    found = services.jobs.output(job_id, output)
    if found is None:
        raise OrthancError(ErrorCode.INEXISTENT_ITEM, f"Job has no such output: {output}")
    return File(
        found.path,
        media_type=found.media_type,
        headers={"content-disposition": f'filename="{found.filename}"'},
    )


def _action_output_handler(action: str) -> HTTPRouteHandler:
    """GET of an action's path: Orthanc reads it as the job output of that name (none has one)."""

    @get(f"/jobs/{{job_id:str}}/{action}", name=f"jobs-{action}-output", include_in_schema=False)
    async def output(job_id: str, services: Services) -> File:
        return _output(job_id, action, services)

    return output


def _action_handler(action: str) -> HTTPRouteHandler:
    @post(f"/jobs/{{job_id:str}}/{action}", name=f"jobs-{action}", status_code=200)
    async def act(job_id: str, services: Services) -> Response[bytes]:
        accepted = await getattr(services.jobs, action)(job_id)
        if not accepted:
            raise BareHttpError(400)
        return empty_object()

    return act


JOB_HANDLERS: list[HTTPRouteHandler] = [
    list_jobs,
    get_job,
    job_output,
    *(_action_handler(action) for action in ACTIONS),
    *(_action_output_handler(action) for action in ACTIONS),
]
