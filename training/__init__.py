"""Hemaview's training pipeline: MoCo pretraining, the multi-task U-Net, evaluation, export.

Needs the `train` extra (torch, torchvision, segmentation-models-pytorch); the clinic
install never imports it.
"""
