"""A softmax head for TorchScript modules (imported ``.pt`` files), kept scriptable.

``with_softmax`` wraps a Python module for tracing; a loaded TorchScript module cannot be
traced from inside a Python wrapper ("not part of the active trace"), so its head is
scripted too and the exporters receive one ScriptModule. Imports torch at import time:
import this module lazily.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["scripted_with_softmax"]


class _ScriptedSoftmax(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=-1)


def scripted_with_softmax(module: Any) -> Any:
    """A ScriptModule computing ``softmax(module(x))``, in eval mode."""
    return torch.jit.script(_ScriptedSoftmax(module)).eval()
