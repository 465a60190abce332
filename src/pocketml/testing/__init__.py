"""What users and pocketml's own tests share: small, valid model files for pushes.

A push checks that each file is what its variant's format says (ONNX Runtime opens ONNX
and ORT files; TFLite and Core ML files must carry their container's marks), so tests and
demos that only exercise delivery need files that pass that check but are cheap to make.
"""

from pocketml.testing._model_files import write_model_file

__all__ = ["write_model_file"]
