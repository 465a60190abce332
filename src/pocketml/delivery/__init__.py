"""pocketml.delivery: device check-in — which variant each device runs, and its policies.

``DeliveryService.checkin(app_id, DeviceFacts(...))`` returns the device's manifest (the
canonical JSON and its ETag). The variant rule is one replaceable function,
``choose_variant(device, version)`` in ``decide.py``; hybrid and download policies are
stored per model version (``set_policy``) with documented defaults.
"""

from pocketml.delivery._types import (
    DEFAULT_CHECKIN_INTERVAL_S,
    HYBRID_MODES,
    DeviceFacts,
    DownloadPolicy,
    HybridPolicy,
    Manifest,
    VersionPolicy,
)
from pocketml.delivery.decide import choose_variant, parse_min_runtime, runtime_satisfies
from pocketml.delivery.manifest import CatalogEntry, build_manifest, default_policy
from pocketml.delivery.service import DeliveryService

__all__ = [
    "DEFAULT_CHECKIN_INTERVAL_S",
    "HYBRID_MODES",
    "CatalogEntry",
    "DeliveryService",
    "DeviceFacts",
    "DownloadPolicy",
    "HybridPolicy",
    "Manifest",
    "VersionPolicy",
    "build_manifest",
    "choose_variant",
    "default_policy",
    "parse_min_runtime",
    "runtime_satisfies",
]
