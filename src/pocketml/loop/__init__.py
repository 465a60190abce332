"""Close the loop: consented samples, retraining jobs, the gate, the canary (docs/loop.md).

The server-side stage after monitoring. Samples arrive from consenting devices into the
sample store; a trigger (an alert, a schedule, enough new labels, or a person) creates a
retraining job; the job runs the production version's recipe on the original data plus
the trusted samples, distils the device model from the new cloud model, builds every
variant and pushes a candidate; the gate compares it with the champion; only a blessed
candidate starts a staged rollout under the usual guardrails.
"""

from pocketml.loop._samples import SampleStore
from pocketml.loop._samples_values import (
    ForgetReport,
    IngestResult,
    SampleInfo,
    SamplePage,
    invert_normalization,
)
from pocketml.loop._types import LabelledSamples

__all__ = [
    "ForgetReport",
    "IngestResult",
    "LabelledSamples",
    "SampleInfo",
    "SamplePage",
    "SampleStore",
    "invert_normalization",
]
