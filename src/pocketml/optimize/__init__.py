"""Optimization of converted models: post-training quantization and variant selection.

- ``quantize``: int8 (dynamic, static) and fp16 variants of ONNX, TFLite and Core ML files.
- ``select``: the best variant per device profile under size, latency and accuracy budgets.
"""

from pocketml.optimize.quantize import (
    CALIBRATION_METHODS,
    CoremlFp16Quantizer,
    CoremlWeightQuantizer,
    OnnxDynamicQuantizer,
    OnnxFp16Quantizer,
    OnnxStaticQuantizer,
    QuantizedModel,
    Quantizer,
    TfliteDynamicQuantizer,
    TfliteFp16Quantizer,
    TfliteStaticQuantizer,
    file_size,
)
from pocketml.optimize.select import (
    Budget,
    BudgetCheck,
    Selection,
    VariantSelector,
    plot_variants,
    print_selections,
    selections_table,
)

__all__ = [
    "CALIBRATION_METHODS",
    "Budget",
    "BudgetCheck",
    "CoremlFp16Quantizer",
    "CoremlWeightQuantizer",
    "OnnxDynamicQuantizer",
    "OnnxFp16Quantizer",
    "OnnxStaticQuantizer",
    "QuantizedModel",
    "Quantizer",
    "Selection",
    "TfliteDynamicQuantizer",
    "TfliteFp16Quantizer",
    "TfliteStaticQuantizer",
    "VariantSelector",
    "file_size",
    "plot_variants",
    "print_selections",
    "selections_table",
]
