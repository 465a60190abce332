"""``GET /v1/packages/{package_id}``: stream a signed package, with HTTP Range support.

Packages are immutable and content addressed (the id is the sha256 of the file), so the
id is also the ETag. The body is streamed from the ArtifactStore in 1 MiB chunks: memory
does not grow with the package size. A device resumes a cut download with
``Range: bytes=<received>-`` and gets 206 with ``Content-Range``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from pocketml.registry import Principal
from pocketml.server._ranges import parse_range
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_app_member
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import PackageId

__all__ = ["router"]

router = APIRouter(tags=["packages"], route_class=StrictJsonRoute)


@router.get(
    "/v1/packages/{package_id}",
    summary="Download a package",
    description=(
        "Streams the signed package (a zip: manifest.json, manifest.sig, the model file, "
        "schema.json, card.md). Needs the owning app's device key or admin token; another "
        "app's package answers 404. Supports a single HTTP byte range (206 Partial Content, "
        "416 when unsatisfiable) so devices can resume. Verify the package with the app's "
        "pinned public key before use."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The whole package.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        206: {
            "description": "The requested byte range.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        **errors(*ERRORS_AUTH, 404, 416),
    },
)
async def download_package(
    request: Request,
    package_id: PackageId,
    principal: Principal = Depends(require_app_member),
    state: ServerState = Depends(server_state),
) -> StreamingResponse:
    """Stream a package (whole, or one byte range) to its app's device or admin."""
    ref = await run_in_threadpool(state.registry.get_package, principal.app_id, package_id)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{ref.sha256}"',
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    selected = parse_range(request.headers.get("range"), ref.size)
    if_range = request.headers.get("if-range")
    if selected is not None and if_range is not None and if_range.strip('"') != ref.sha256:
        selected = None  # the client holds another file: send the whole new one
    if selected is None:
        start, end, status = 0, ref.size, 200
    else:
        start, end, status = selected[0], selected[1] + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{ref.size}"
    headers["Content-Length"] = str(end - start)
    chunks = await run_in_threadpool(state.artifacts.iter_range, ref.key, start, end)
    return StreamingResponse(
        chunks, status_code=status, media_type="application/zip", headers=headers
    )
