"""Hemaview's training pipeline: MoCo pretraining, the multi-task U-Net, evaluation, export.

Needs the `train` extra (torch, torchvision, segmentation-models-pytorch); the clinic
install never imports it.
"""

import os as _os

# onnxruntime's telemetry stays off here too: every import goes through
# inference.onnx_runtime (a contract holds it); this is the belt to its braces, set before
# anything in training can load onnxruntime.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
