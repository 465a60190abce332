"""pocketml.serving: cloud inference — session cache bounded by memory, micro-batching.

``ServingService.predict(app_id, model, inputs, prediction_id)`` serves the production
version of a model (its cloud variant, else its first runnable device variant) through
an LRU ``SessionCache`` of ONNX Runtime / LiteRT sessions keyed by model sha256, with a
``MicroBatcher`` per model that merges concurrent requests into one runtime call.
"""

from pocketml.serving._batcher import BatcherStats, MicroBatcher
from pocketml.serving._cache import LoadedModel, SessionCache, extract_variant, load_model
from pocketml.serving.service import ServingOptions, ServingService, pick_served_variant

__all__ = [
    "BatcherStats",
    "LoadedModel",
    "MicroBatcher",
    "ServingOptions",
    "ServingService",
    "SessionCache",
    "extract_variant",
    "load_model",
    "pick_served_variant",
]
