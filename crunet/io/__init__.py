"""Reading what crunet writes, for every package above the models: training checkpoints (``crunet.io.checkpoint``),
the atomic file writes every writer shares (``crunet.io.atomic``), a run's normalization
(``crunet.io.normalization``) and safetensors files told by their bytes (``crunet.io.safetensors_file``).
Imports nothing from crunet but ``crunet.errors``, so training, interop and the command line can all use it."""
