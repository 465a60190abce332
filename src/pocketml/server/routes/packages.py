"""``GET``/``HEAD /v1/packages/{package_id}``: a signed package, with HTTP Range support.

Packages are immutable and content addressed (the id is the sha256 of the file), so the
id is also the ETag. The body is streamed from the ArtifactStore in 1 MiB chunks: memory
does not grow with the package size. A device resumes a cut download with
``Range: bytes=<received>-`` and gets 206 with ``Content-Range``; ``HEAD`` answers the same
status and headers without a body (and without opening the stored file).

Who may fetch (docs/packages.md, "Serving packages from a CDN"): with a device key or
admin token, the lookup is scoped to that app, as for every other route. Without a
credential, a package of an app whose packages are public is served to anyone holding
its id, and the answer of a public app says ``Cache-Control: public`` so a CDN may keep
it; a private app's packages need the key and are marked ``private``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from pocketml.registry import Principal, StoredPackage
from pocketml.server._ranges import parse_range
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import optional_app_member
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import PackageId

__all__ = ["CACHE_PRIVATE", "CACHE_PUBLIC", "router"]

router = APIRouter(tags=["packages"], route_class=StrictJsonRoute)

CACHE_PUBLIC = "public, max-age=31536000, immutable"
CACHE_PRIVATE = "private, max-age=31536000, immutable"

_PATH = "/v1/packages/{package_id}"
_ZIP = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}
_WHO = (
    "With the app's device key or admin token the package is looked up in that app "
    "(another app's package answers 404). Without a credential, only a package of an app "
    "whose packages are public is served (404 otherwise), and the answer is cacheable by "
    "a CDN (`Cache-Control: public, max-age=31536000, immutable`); a private app's "
    "packages are `Cache-Control: private`."
)


@router.get(
    _PATH,
    summary="Download a package",
    description=(
        "Streams the signed package (a zip: manifest.json, manifest.sig, the model file, "
        "schema.json, card.md). " + _WHO + " Supports a single HTTP byte range (206 Partial "
        "Content, 416 when unsatisfiable) so devices can resume. Verify the package with "
        "the app's pinned keyring before use."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"description": "The whole package.", "content": _ZIP},
        206: {"description": "The requested byte range.", "content": _ZIP},
        **errors(*ERRORS_AUTH, 404, 416),
    },
)
async def download_package(
    request: Request,
    package_id: PackageId,
    principal: Principal | None = Depends(optional_app_member),
    state: ServerState = Depends(server_state),
) -> StreamingResponse:
    """Stream a package (whole, or one byte range)."""
    ref, public = await run_in_threadpool(_find, state, principal, package_id)
    status, start, end, headers = _answer(request, ref, public)
    chunks = await run_in_threadpool(state.artifacts.iter_range, ref.key, start, end)
    return StreamingResponse(
        chunks, status_code=status, media_type="application/zip", headers=headers
    )


@router.head(
    _PATH,
    summary="Check a package without downloading it",
    description=(
        "The status and headers `GET` would answer (`Content-Length`, `ETag`, "
        "`Accept-Ranges`, `Cache-Control`, `Content-Range` for a Range), without a body. " + _WHO
    ),
    response_class=Response,
    responses={
        200: {"description": "The package exists; its size is `Content-Length`."},
        206: {"description": "The range is satisfiable; `Content-Range` says which."},
        **errors(*ERRORS_AUTH, 404, 416),
    },
)
async def head_package(
    request: Request,
    package_id: PackageId,
    principal: Principal | None = Depends(optional_app_member),
    state: ServerState = Depends(server_state),
) -> Response:
    """Answer the headers of a package download, without the body."""
    ref, public = await run_in_threadpool(_find, state, principal, package_id)
    status, _, _, headers = _answer(request, ref, public)
    return Response(status_code=status, media_type="application/zip", headers=headers)


def _find(
    state: ServerState, principal: Principal | None, package_id: str
) -> tuple[StoredPackage, bool]:
    """The package a request may see, and whether shared caches may keep it."""
    if principal is None:
        return state.registry.find_public_package(package_id), True
    ref = state.registry.get_package(principal.app_id, package_id)
    return ref, state.registry.packages_public(principal.app_id)


def _answer(
    request: Request, ref: StoredPackage, public: bool
) -> tuple[int, int, int, dict[str, str]]:
    """(status, first byte, end byte exclusive, headers) of a GET or HEAD of ``ref``."""
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{ref.sha256}"',
        "Cache-Control": CACHE_PUBLIC if public else CACHE_PRIVATE,
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
    return status, start, end, headers
