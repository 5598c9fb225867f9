"""Hemaview's training pipeline: MoCo pretraining, the multi-task U-Net, evaluation, export.

Needs the `train` extra (torch, torchvision, segmentation-models-pytorch); the clinic
install never imports it.
"""

import os as _os

# onnxruntime's telemetry stays off here too (see inference.onnx_runtime); set before any
# training module imports onnxruntime itself (quantize imports onnxruntime.quantization).
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
