"""Admin routes of the loop: retraining jobs and the per-model loop policy.

- ``POST /v1/admin/models/{name}/loop/jobs`` — run a job now (201), or get the model's
  active job (200): two runs at once make one job;
- ``GET /v1/admin/models/{name}/loop/jobs`` — the model's jobs, newest first;
- ``GET /v1/admin/loop/jobs/{id}`` — one job with its steps, log and gate numbers;
- ``GET|PUT /v1/admin/models/{name}/loop`` — the model's ``LoopPolicy`` (defaults filled).

Thin: parse, call one ``LoopService`` method, map the dataclass.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AfterValidator

from pocketml.bounds import check_text
from pocketml.loop import LoopPolicy
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_loop import JobCreate, JobCreated, JobList, JobPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["loop"], route_class=StrictJsonRoute)

_JobId = Annotated[
    str, Path(min_length=1, max_length=40, description="The job's id."), AfterValidator(check_text)
]
_Limit = Annotated[int, Query(ge=1, le=500)]


def _actor(principal: Principal) -> str:
    return f"admin:{principal.app_id}"


@router.post(
    "/models/{name}/loop/jobs",
    status_code=201,
    response_model=JobCreated,
    summary="Run a retraining job",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def run_job(
    name: ModelName,
    body: JobCreate,
    response: Response,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> JobCreated:
    """Queue a job for the model (201), or answer its queued or running job (200)."""
    details = {"note": body.note} if body.note else {}
    job, created = state.loop_service.run(
        principal.app_id, name, trigger="manual", actor=_actor(principal), details=details
    )
    if not created:
        response.status_code = 200
    return JobCreated(job=JobPublic.model_validate(job), created=created)


@router.get(
    "/models/{name}/loop/jobs",
    response_model=JobList,
    summary="List a model's retraining jobs",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def list_jobs(
    name: ModelName,
    limit: _Limit = 20,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> JobList:
    """The model's jobs, newest first."""
    jobs = state.loop_service.list_jobs(principal.app_id, name, limit=limit)
    return JobList(items=[JobPublic.model_validate(j) for j in jobs])


@router.get(
    "/loop/jobs",
    response_model=JobList,
    summary="List the app's retraining jobs",
    responses=errors(*ERRORS_AUTH, 422),
)
def list_all_jobs(
    limit: _Limit = 20,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> JobList:
    """Every model's jobs, newest first."""
    jobs = state.loop_service.list_jobs(principal.app_id, limit=limit)
    return JobList(items=[JobPublic.model_validate(j) for j in jobs])


@router.get(
    "/loop/jobs/{job_id}",
    response_model=JobPublic,
    summary="Get a retraining job",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def get_job(
    job_id: _JobId,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> JobPublic:
    """One job: state, step timings, log, candidate, gate numbers, rollout, error."""
    return JobPublic.model_validate(state.loop_service.get_job(principal.app_id, job_id))


@router.get(
    "/models/{name}/loop",
    response_model=LoopPolicy,
    summary="Get a model's loop policy",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def get_policy(
    name: ModelName,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> LoopPolicy:
    """The policy with every default filled in."""
    return state.loop_service.get_policy(principal.app_id, name)


@router.put(
    "/models/{name}/loop",
    response_model=LoopPolicy,
    summary="Set a model's loop policy",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def set_policy(
    name: ModelName,
    body: LoopPolicy,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> LoopPolicy:
    """Replace the policy (missing keys: defaults; an unknown key or bad value: 422)."""
    return state.loop_service.set_policy(
        principal.app_id, name, body.to_dict(), actor=_actor(principal)
    )
