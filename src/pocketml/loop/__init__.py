"""Close the loop: consented samples, retraining jobs, the gate, the canary (docs/loop.md).

The server-side stage after monitoring. Samples arrive from consenting devices into the
sample store; a trigger (an alert, a schedule, enough new labels, or a person) creates a
retraining job; the job runs the production version's recipe on the original data plus
the trusted samples, distils the device model from the new cloud model, builds every
variant and pushes a candidate; the gate compares it with the champion; only a blessed
candidate starts a staged rollout under the usual guardrails.

- ``LoopService``: jobs (``run``, ``list_jobs``, ``get_job``), policies, ``tick`` (the
  background pass: recover, triggers, run one job under its lease);
- ``LoopPolicy`` (``parse_policy``): every setting of the loop with its default, once;
- ``filter_samples``: the poisoned-feedback defence (caps, teacher and neighbour
  agreement, outlier devices) with a ``TrustReport``;
- ``evaluate_gate``: the blessing (golden holdout, fresh samples, device classes, paired
  bootstrap) with a ``GateResult``; ``hold_out`` and ``onnx_scorer`` feed it;
- ``run_recipe``: the default recipe runner (``pocketml build``'s pipeline on the recipe
  stored with the champion, plus the trusted samples).
"""

from pocketml.loop._gate import (
    GateResult,
    Scorer,
    SetScore,
    evaluate_gate,
    hold_out,
    onnx_scorer,
    paired_bootstrap,
)
from pocketml.loop._jobs import ACTIVE_STATES, JOB_STATES, JOB_STEPS, MAX_LOG_LINES, Job
from pocketml.loop._policy import (
    TRIGGER_KINDS,
    GatePolicy,
    LoopPolicy,
    RolloutPolicy,
    TriggerPolicy,
    TrustPolicy,
    parse_policy,
)
from pocketml.loop._recipe import (
    RecipeResult,
    RecipeRunner,
    SampleSource,
    recipe_of,
    run_recipe,
)
from pocketml.loop._run import Pusher
from pocketml.loop._samples import SampleStore
from pocketml.loop._samples_values import (
    ForgetReport,
    IngestResult,
    SampleInfo,
    SamplePage,
    invert_normalization,
)
from pocketml.loop._trust import DeviceTrust, TrustReport, filter_samples, sample_rank
from pocketml.loop._types import LabelledSamples
from pocketml.loop.service import LoopService, TickOutcome

__all__ = [
    "ACTIVE_STATES",
    "JOB_STATES",
    "JOB_STEPS",
    "MAX_LOG_LINES",
    "TRIGGER_KINDS",
    "DeviceTrust",
    "ForgetReport",
    "GatePolicy",
    "GateResult",
    "IngestResult",
    "Job",
    "LabelledSamples",
    "LoopPolicy",
    "LoopService",
    "Pusher",
    "RecipeResult",
    "RecipeRunner",
    "RolloutPolicy",
    "SampleInfo",
    "SamplePage",
    "SampleSource",
    "SampleStore",
    "Scorer",
    "SetScore",
    "TickOutcome",
    "TriggerPolicy",
    "TrustPolicy",
    "TrustReport",
    "evaluate_gate",
    "filter_samples",
    "hold_out",
    "invert_normalization",
    "onnx_scorer",
    "paired_bootstrap",
    "parse_policy",
    "recipe_of",
    "run_recipe",
    "sample_rank",
]
