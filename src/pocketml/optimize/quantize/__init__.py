"""Post-training quantization of converted model files: int8 and fp16 variants.

One small verb per method (STYLE.md rule 9): a quantizer stores its configuration and
``apply(src, dst)`` writes the quantized file and returns a :class:`QuantizedModel`.
One module per format; the shared contract and checks are in ``_base``.

| format | quantizer                    | method    | precision | library                  |
| ------ | ---------------------------- | --------- | --------- | ------------------------ |
| onnx   | ``OnnxDynamicQuantizer``     | dynamic   | int8      | onnxruntime.quantization |
| onnx   | ``OnnxStaticQuantizer``      | static    | int8      | onnxruntime (QDQ)        |
| onnx   | ``OnnxFp16Quantizer``        | fp16      | fp16      | onnxruntime.transformers |
| tflite | ``TfliteDynamicQuantizer``   | dynamic   | int8      | ai-edge-quantizer        |
| tflite | ``TfliteStaticQuantizer``    | static    | int8      | ai-edge-quantizer        |
| tflite | ``TfliteFp16Quantizer``      | fp16      | fp16      | ai-edge-quantizer        |
| coreml | ``CoremlFp16Quantizer``      | fp16      | fp16      | coremltools              |
| coreml | ``CoremlWeightQuantizer``    | weights   | int8      | coremltools              |

Every library failure is translated into :class:`~pocketml.errors.ConversionError` naming
the model and the method.
"""

from pocketml.optimize.quantize._base import (
    CALIBRATION_METHODS,
    QuantizedModel,
    Quantizer,
    file_size,
)
from pocketml.optimize.quantize._coreml import CoremlFp16Quantizer, CoremlWeightQuantizer
from pocketml.optimize.quantize._onnx import (
    OnnxDynamicQuantizer,
    OnnxFp16Quantizer,
    OnnxStaticQuantizer,
)
from pocketml.optimize.quantize._tflite import (
    TfliteDynamicQuantizer,
    TfliteFp16Quantizer,
    TfliteStaticQuantizer,
)

__all__ = [
    "CALIBRATION_METHODS",
    "CoremlFp16Quantizer",
    "CoremlWeightQuantizer",
    "OnnxDynamicQuantizer",
    "OnnxFp16Quantizer",
    "OnnxStaticQuantizer",
    "QuantizedModel",
    "Quantizer",
    "TfliteDynamicQuantizer",
    "TfliteFp16Quantizer",
    "TfliteStaticQuantizer",
    "file_size",
]
