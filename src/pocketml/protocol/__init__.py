"""pocketml.protocol: the wire vocabulary, once — what the server and every client agree on.

A protocol noun spelled in two places drifts. Everything the server, the admin client and
the device SDK must agree on is declared here and derived elsewhere (at import time, never
per request); ``tests/test_protocol.py`` checks every derived copy against it.

- Errors (``_errors.py``): ``ERROR_CATALOG``, class <-> code <-> HTTP status.
- Formats (``_formats.py``): ``FORMATS`` with their extensions, ``file_sha256``.
- Telemetry events (``_events.py``): ``EVENT_KINDS`` and their ``WireField`` s; the
  server's pydantic and msgspec schemas, the stored Arrow columns, the device queue's
  columns and the docs' field table derive from them.
- Profile events (``_sketch_codec.py``): the ``sketch`` string's encoding.
- Samples (``_capture.py``): ``CapturePolicy`` (in the manifest beside the monitor
  policy) and the ``POST /v1/samples`` batch, ``parse_sample_batch``.
- Federated learning (``_federated.py``): the check-in's ``federated`` announcement, the
  round document's signature context, the ``fl_*`` error codes.
- Check-in (``_checkin.py``): open device classes, the check-in choice, the hybrid,
  download and monitor policies (one class on both sides), the manifest entry's fields and the
  canonical name of a package's digest.

Standard library and ``pocketml.errors`` only, so the device SDK imports it without the
server's frameworks.
"""

from pocketml.protocol._capture import (
    CAPTURE_MODES,
    CAPTURE_POLICY_FIELDS,
    DEVICE_ID_PATTERN,
    MAX_SAMPLE_BATCH_BYTES,
    MAX_SAMPLE_VALUES,
    MAX_SAMPLES_PER_BATCH,
    SAMPLE_BATCH_FIELDS,
    SAMPLE_FIELDS,
    SAMPLE_INPUT_FIELDS,
    CaptureMode,
    CapturePolicy,
    SampleBatch,
    WireSample,
    encode_tensor,
    parse_sample_batch,
)
from pocketml.protocol._checkin import (
    BUILTIN_DEVICE_CLASSES,
    DEFAULT_MAX_CELLULAR_BYTES,
    DEVICE_CLASS_PATTERN,
    DOWNLOAD_POLICY_FIELDS,
    HYBRID_MODES,
    HYBRID_POLICY_FIELDS,
    MANIFEST_ENTRY_FIELDS,
    MONITOR_POLICY_FIELDS,
    PACKAGE_DIGEST,
    PACKAGE_DIGEST_ALIASES,
    PACKAGE_FIELDS,
    PLATFORMS,
    CheckinChoice,
    DownloadPolicy,
    HybridMode,
    HybridPolicy,
    MonitorPolicy,
    PackageRef,
    Platform,
    arm_choice,
    check_device_class,
    choice_version,
    cloud_route_of,
)
from pocketml.protocol._errors import (
    ERROR_CATALOG,
    ERROR_CODE_PATTERN,
    TRANSPORT_CODES,
    ErrorRow,
    codes_for,
    error_class,
    http_code,
    is_masked,
    status_for,
)
from pocketml.protocol._events import (
    COMMON_EVENT_FIELDS,
    EVENT_COLUMN_TYPES,
    EVENT_COLUMNS,
    EVENT_KINDS,
    EVENT_TYPE_FIELD,
    INFERENCE_QUEUE_FIELDS,
    MAX_SKETCH_CHARS,
    MAX_SKETCH_EPSILON,
    PROFILE_EVENT,
    STORED_EVENT_KINDS,
    EventKind,
)
from pocketml.protocol._federated import (
    FEDERATED_ANNOUNCEMENT_FIELDS,
    FEDERATED_ERRORS,
    FEDERATED_REQUIRES_FIELDS,
    IDEMPOTENCY_KEY_PATTERN,
    LEAVE_REASONS,
    ROUND_SIGNATURE_CONTEXT,
    ROUND_SIGNATURE_HEADER,
    ROUND_SIGNATURE_KEY_HEADER,
    SECAGG_PHASES,
    TASK_ID_PATTERN,
    FlAlreadyReported,
    FlNormTooLarge,
    FlNotEligible,
    FlNotFinite,
    FlNotSelected,
    FlRoundClosed,
    FlSecAggInvalid,
    FlTaskClosed,
    FlWrongPhase,
    FlWrongRound,
    FlWrongShape,
)
from pocketml.protocol._fields import INT32_MAX, INT64_MAX, WireField, WireType, describe_rule
from pocketml.protocol._formats import (
    FORMAT_NAMES,
    FORMATS,
    RUNNABLE_FORMATS,
    ModelFormat,
    file_sha256,
)
from pocketml.protocol._sketch_codec import decode_sketch, encode_sketch

__all__ = [
    "BUILTIN_DEVICE_CLASSES",
    "CAPTURE_MODES",
    "CAPTURE_POLICY_FIELDS",
    "COMMON_EVENT_FIELDS",
    "DEFAULT_MAX_CELLULAR_BYTES",
    "DEVICE_CLASS_PATTERN",
    "DEVICE_ID_PATTERN",
    "DOWNLOAD_POLICY_FIELDS",
    "ERROR_CATALOG",
    "ERROR_CODE_PATTERN",
    "EVENT_COLUMNS",
    "EVENT_COLUMN_TYPES",
    "EVENT_KINDS",
    "EVENT_TYPE_FIELD",
    "FORMATS",
    "FORMAT_NAMES",
    "HYBRID_MODES",
    "HYBRID_POLICY_FIELDS",
    "INFERENCE_QUEUE_FIELDS",
    "INT32_MAX",
    "INT64_MAX",
    "MANIFEST_ENTRY_FIELDS",
    "MAX_SAMPLES_PER_BATCH",
    "MAX_SAMPLE_BATCH_BYTES",
    "MAX_SAMPLE_VALUES",
    "MAX_SKETCH_CHARS",
    "MAX_SKETCH_EPSILON",
    "MONITOR_POLICY_FIELDS",
    "PACKAGE_DIGEST",
    "PACKAGE_DIGEST_ALIASES",
    "PACKAGE_FIELDS",
    "PLATFORMS",
    "PROFILE_EVENT",
    "RUNNABLE_FORMATS",
    "SAMPLE_BATCH_FIELDS",
    "SAMPLE_FIELDS",
    "SAMPLE_INPUT_FIELDS",
    "STORED_EVENT_KINDS",
    "TRANSPORT_CODES",
    "CaptureMode",
    "CapturePolicy",
    "CheckinChoice",
    "DownloadPolicy",
    "ErrorRow",
    "EventKind",
    "HybridMode",
    "HybridPolicy",
    "ModelFormat",
    "MonitorPolicy",
    "PackageRef",
    "Platform",
    "SampleBatch",
    "WireField",
    "WireSample",
    "WireType",
    "arm_choice",
    "check_device_class",
    "choice_version",
    "cloud_route_of",
    "codes_for",
    "decode_sketch",
    "describe_rule",
    "encode_sketch",
    "encode_tensor",
    "error_class",
    "file_sha256",
    "http_code",
    "is_masked",
    "parse_sample_batch",
    "status_for",
]

__all__ += [
    "FEDERATED_ANNOUNCEMENT_FIELDS",
    "FEDERATED_ERRORS",
    "FEDERATED_REQUIRES_FIELDS",
    "IDEMPOTENCY_KEY_PATTERN",
    "LEAVE_REASONS",
    "ROUND_SIGNATURE_CONTEXT",
    "ROUND_SIGNATURE_HEADER",
    "ROUND_SIGNATURE_KEY_HEADER",
    "SECAGG_PHASES",
    "TASK_ID_PATTERN",
    "FlAlreadyReported",
    "FlNormTooLarge",
    "FlNotEligible",
    "FlNotFinite",
    "FlNotSelected",
    "FlRoundClosed",
    "FlSecAggInvalid",
    "FlTaskClosed",
    "FlWrongPhase",
    "FlWrongRound",
    "FlWrongShape",
]
