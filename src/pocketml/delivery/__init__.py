"""pocketml.delivery: device check-in — which variant each device runs, and its policies.

``DeliveryService.checkin(app_id, CheckinFacts(...))`` returns the device's manifest (the
canonical JSON and its ETag). The variant rule is one replaceable function,
``choose_variant(device, version)`` in ``decide.py``; hybrid and download policies are
stored per model version (``set_policy``) with documented defaults. Targeting rules,
staged rollouts with guardrails and their evaluator live in ``targeting.py``,
``rollouts.py``, ``guardrails.py`` and ``evaluator.py`` (see docs/rollouts.md).
"""

from pocketml.delivery._types import (
    DEFAULT_CHECKIN_INTERVAL_S,
    HYBRID_MODES,
    CheckinFacts,
    DownloadPolicy,
    HybridPolicy,
    Manifest,
    MonitorPolicy,
    VersionPolicy,
)
from pocketml.delivery.decide import choose_variant, parse_min_runtime, runtime_satisfies
from pocketml.delivery.evaluator import (
    EvaluationOutcome,
    RolloutEvaluator,
    arm_samples,
    evaluate_rollouts,
)
from pocketml.delivery.experiments import (
    METRICS,
    Arm,
    ArmResult,
    Experiment,
    ExperimentResults,
    ExperimentService,
)
from pocketml.delivery.guardrails import (
    DEFAULT_GUARDRAILS,
    ArmSample,
    GuardrailResult,
    GuardrailSpec,
    evaluate_guardrails,
    parse_guardrails,
)
from pocketml.delivery.manifest import CatalogEntry, build_manifest, default_policy
from pocketml.delivery.rollouts import (
    TRANSITIONS,
    AuditEntry,
    CheckinPlan,
    Rollout,
    RolloutService,
    validate_schedule,
)
from pocketml.delivery.service import DeliveryService
from pocketml.delivery.targeting import (
    Rule,
    Targeting,
    bucket_of,
    in_candidate_group,
    parse_targeting,
)

__all__ = [
    "DEFAULT_CHECKIN_INTERVAL_S",
    "DEFAULT_GUARDRAILS",
    "HYBRID_MODES",
    "METRICS",
    "TRANSITIONS",
    "Arm",
    "ArmResult",
    "ArmSample",
    "AuditEntry",
    "CatalogEntry",
    "CheckinFacts",
    "CheckinPlan",
    "DeliveryService",
    "DownloadPolicy",
    "EvaluationOutcome",
    "Experiment",
    "ExperimentResults",
    "ExperimentService",
    "GuardrailResult",
    "GuardrailSpec",
    "HybridPolicy",
    "Manifest",
    "MonitorPolicy",
    "Rollout",
    "RolloutEvaluator",
    "RolloutService",
    "Rule",
    "Targeting",
    "VersionPolicy",
    "arm_samples",
    "bucket_of",
    "build_manifest",
    "choose_variant",
    "default_policy",
    "evaluate_guardrails",
    "evaluate_rollouts",
    "in_candidate_group",
    "parse_guardrails",
    "parse_min_runtime",
    "parse_targeting",
    "runtime_satisfies",
    "validate_schedule",
]
