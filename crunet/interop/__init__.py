"""Interop with other tools: timm's registry, weight files (safetensors, ONNX, TorchScript), the released MXNet
CRU-Net checkpoints.

Nothing here is imported by ``import crunet`` except ``timm_registry.install``, which only looks for timm. Each
module imports its third-party package (timm, onnx, onnxruntime) inside the functions that need it.
"""
