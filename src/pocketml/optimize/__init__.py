"""Optimization: quantization, pruning, distillation, QAT, selection, calibration, builds.

- ``quantize``: int8 (dynamic, static) and fp16 variants of ONNX, TFLite and Core ML files.
- ``qat``: quantization-aware fine-tuning exported as an ONNX QDQ model.
- ``prune``: global magnitude pruning and structured (channel) pruning, with fine-tuning.
- ``distill``: a large teacher trains a small student with softened targets.
- ``select``: the best variant per device profile under size, latency and accuracy budgets.
- ``calibrate``: the hybrid cascade threshold for a target accuracy or cloud share.
- ``pipeline``: ``pocketml build`` (config in ``config``).
"""

from pocketml.optimize.calibrate import CalibrationResult, calibrate_threshold, plot_calibration
from pocketml.optimize.distill import Distiller, DistillResult, student_cnn
from pocketml.optimize.prune import ChannelPruner, MagnitudePruner, PruneResult
from pocketml.optimize.qat import QATrainer, QATResult
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
    "CalibrationResult",
    "ChannelPruner",
    "CoremlFp16Quantizer",
    "CoremlWeightQuantizer",
    "DistillResult",
    "Distiller",
    "MagnitudePruner",
    "OnnxDynamicQuantizer",
    "OnnxFp16Quantizer",
    "OnnxStaticQuantizer",
    "PruneResult",
    "QATResult",
    "QATrainer",
    "QuantizedModel",
    "Quantizer",
    "Selection",
    "TfliteDynamicQuantizer",
    "TfliteFp16Quantizer",
    "TfliteStaticQuantizer",
    "VariantSelector",
    "calibrate_threshold",
    "file_size",
    "plot_calibration",
    "plot_variants",
    "print_selections",
    "selections_table",
    "student_cnn",
]
