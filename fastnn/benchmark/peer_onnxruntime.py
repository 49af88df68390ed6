"""The contender "onnxruntime": ONNX Runtime on the CPU, inference only.

Imports only NumPy and onnxruntime. The parent exports the case's trained MLP with
``fastnn.interop.to_onnx`` (Gemm + Relu + Gemm + Softmax, the weights as initializers) to
``model.onnx`` in the case's folder; this worker runs it in an ``InferenceSession`` with
default session options (ONNX Runtime's own thread pool and graph optimizations), asking
for the ``"probabilities"`` output.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def describe() -> dict[str, Any]:
    import onnxruntime

    return {"library": "ONNX Runtime", "version": onnxruntime.__version__,
            "providers": onnxruntime.get_available_providers()}


class PredictProba:
    def __init__(self, path: str, X: np.ndarray) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.feed = {"X": X}

    def run(self) -> np.ndarray:
        probabilities: np.ndarray = self.session.run(["probabilities"], self.feed)[0]
        return probabilities

    def outputs(self) -> Arrays:
        return {"P": self.run()}


def setup(name: str, workload: str, params: dict[str, Any], arrays: Arrays,
          folder: str) -> Any:
    if workload != "inference":
        return None
    path = os.path.join(folder, "model.onnx")
    if not os.path.exists(path):
        raise FileNotFoundError("no model.onnx: the onnx package (which fastnn.interop.to_onnx "
                                "needs) is not installed where the inputs were built")
    return PredictProba(path, arrays["X"])
