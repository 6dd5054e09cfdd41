"""Interop with other tools: weight files (safetensors, ONNX, TorchScript), the released MXNet CRU-Net checkpoints,
torchvision detection backbones (``detection``) and ``crunet predict`` (``predict``). timm's registry is
``crunet/timm.py`` (``import crunet.timm``).

``import crunet`` imports nothing here. Each module imports its third-party package (torchvision, onnx, onnxruntime,
safetensors) inside the functions that need it.
"""
