"""Check-in: the device's facts in, its manifest (or 304 Not Modified) out.

The validated body becomes ``CheckinFacts`` and the delivery service answers with the
device's manifest: its canonical JSON with ``ETag: "<sha256>"``, or 304 without a body
when ``If-None-Match`` carries that ETag.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import orjson
from anyio import to_thread
from pydantic import ValidationError

from pocketml.delivery import CheckinFacts, Manifest
from pocketml.errors import ValidationFailed
from pocketml.registry import Principal
from pocketml.server._federated import announce
from pocketml.server._json import describe_errors, parse_json
from pocketml.server._state import ServerState
from pocketml.server.device_api._answer import Answer
from pocketml.server.schemas_device import CheckinRequest

if TYPE_CHECKING:
    from pocketml.federated import FederatedService

__all__ = ["CheckinRejected", "answer_checkin"]

_NO_CACHE = (b"cache-control", b"private, no-cache")


class CheckinRejected(ValidationFailed):
    """Device facts that fail ``CheckinRequest`` (HTTP 422 naming each field)."""


async def answer_checkin(
    state: ServerState, principal: Principal, body: bytes, if_none_match: str | None
) -> Answer:
    """The answer to a check-in: 200 with the manifest JSON, or 304 without a body.

    Both carry ``ETag`` and ``Cache-Control: private, no-cache``. The manifest comes
    from the delivery service's memo when it holds one for these targeting facts (no
    thread hop), else from a catalog read in a worker thread.

    Args:
        state: the server state.
        principal: the authenticated device key's principal.
        body: the request body (JSON ``CheckinRequest``).
        if_none_match: the ``If-None-Match`` header, if any.

    Raises:
        MalformedJson: the body is not JSON (400).
        CheckinRejected: bad facts (422, naming each field).
        Unavailable: the database cannot be reached (503).
    """
    try:
        request = CheckinRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        raise CheckinRejected(describe_errors(exc)) from exc
    facts = _facts(request)
    manifest = state.delivery.cached_manifest(principal.app_id, facts)
    if manifest is None:
        manifest = await to_thread.run_sync(state.delivery.checkin, principal.app_id, facts)
    if state.federated is not None:
        manifest = await _with_federated(state.federated, principal.app_id, facts, manifest)
    headers = ((b"etag", f'"{manifest.etag}"'.encode()), _NO_CACHE)
    if _matches(if_none_match, manifest.etag):
        return Answer(304, b"", headers)
    return Answer(200, manifest.body, headers)


async def _with_federated(
    service: FederatedService, app_id: str, facts: CheckinFacts, manifest: Manifest
) -> Manifest:
    """The manifest with its optional ``federated`` list: the open tasks targeting the device.

    Unchanged (same bytes, same ETag) when there are none, so apps without federated
    learning see exactly the manifest they saw before it.
    """
    items = service.cached_announcements(app_id)
    if items is None:
        items = await to_thread.run_sync(service.announcements, app_id)
    if not items:
        return manifest
    entries = announce(items, facts)
    if not entries:
        return manifest
    document = orjson.loads(manifest.body)
    document["federated"] = entries
    body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return Manifest(body=body, etag=hashlib.sha256(body).hexdigest())


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        value = candidate.strip().removeprefix("W/").strip('"')
        if value in (etag, "*"):
            return True
    return False


def _facts(body: CheckinRequest) -> CheckinFacts:
    return CheckinFacts(
        device_id=body.device_id,
        platform=body.platform,
        formats=tuple(body.formats),
        os_version=body.os_version,
        app_version=body.app_version,
        device_model=body.device_model,
        device_class=body.device_class,
        runtimes=tuple(sorted((k.lower(), v) for k, v in (body.runtimes or {}).items())),
        country=body.country,
    )
