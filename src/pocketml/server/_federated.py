"""What the server hands the federated service: the signer, the pusher and the extractor.

``pocketml.federated`` sits beside delivery and below the loop, so the server gives it:

- a **signer**: the app's active package-signing key (Ed25519) signs each round document,
  so a device verifies the round's weights with the keyring it already trusts for packages;
- the loop's **pusher** (``_loop.make_pusher``): a task's result is pushed exactly like a
  retraining job's candidate (``prepare_build`` + ``Registry.push_version``, atomic);
- the **extractor** (``serving.extract_variant``): a version's model file from its verified
  package;
- the **announcer** for check-in: the open tasks whose targeting matches the device.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketml.errors import InvalidInput
from pocketml.server._loop import make_pusher

if TYPE_CHECKING:
    from pocketml.delivery import CheckinFacts
    from pocketml.federated import Announcement, FederatedService
    from pocketml.registry import Registry

__all__ = ["announce", "make_signer", "open_federated"]

logger = logging.getLogger(__name__)


def make_signer(registry: Registry) -> Any:
    """``signer(app_id, data) -> (key_id, signature)`` with the app's active signing key."""

    def sign(app_id: str, data: bytes) -> tuple[str, bytes]:
        # The registry keeps the active key wrapped by the master key; the same key signs
        # packages and keyrings (each with its own context prefix).
        key = registry._active_signing_key(app_id)
        return key.key_id, key.sign(data)

    return sign


def open_federated(
    registry: Registry,
    home: Path,
    owner: str | None,
    delivery: Any = None,
    max_update_bytes: int | None = None,
) -> FederatedService:
    """The server's ``FederatedService`` on the registry's database; with ``delivery``, a
    task that asks for it starts a staged rollout of its result (``delivery.rollouts``)."""
    from pocketml.delivery import parse_targeting
    from pocketml.federated import FederatedService
    from pocketml.serving import extract_variant

    return FederatedService(
        registry.store.engine,
        registry,
        signer=make_signer(registry),
        pusher=make_pusher(registry),
        extract=functools.partial(extract_variant, registry),
        check_targeting=parse_targeting,
        work_dir=home / "federated",
        owner=owner,
        start_rollout=None if delivery is None else _rollout_starter(delivery),
        max_update_bytes=max_update_bytes,
    )


def _rollout_starter(delivery: Any) -> Any:
    """``start(app_id, model, version, options, actor) -> rollout id`` on the delivery's
    rollouts: the same call the loop makes for a blessed candidate."""

    def start(app_id: str, model: str, version: int, options: dict[str, Any], actor: str) -> str:
        rollout = delivery.rollouts.create(app_id, model, version, actor=actor, **options)
        return str(rollout.id)

    return start


@functools.lru_cache(maxsize=256)
def _targeting(rules: str) -> Any:
    import json

    from pocketml.delivery import parse_targeting

    return parse_targeting(json.loads(rules))


def announce(items: Sequence[Announcement], facts: CheckinFacts) -> list[dict[str, Any]]:
    """The manifest's ``federated`` entries for a device: open tasks whose targeting matches.

    A task whose stored targeting no longer parses is skipped (and logged), never a 500
    for every check-in of the app.
    """
    import json

    out = []
    for item in items:
        try:
            targeting = _targeting(json.dumps(list(item.targeting), sort_keys=True))
        except InvalidInput as exc:  # a stored rule the parser refuses now: skip the task
            logger.warning("federated task %s: bad targeting: %s", item.task_id, exc)
            continue
        if targeting.matches(facts):
            out.append(item.to_dict())
    return out
