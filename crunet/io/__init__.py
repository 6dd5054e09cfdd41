"""Reading what crunet writes, for every package above the models: training checkpoints (``crunet.io.checkpoint``),
and the atomic file writes every writer shares (``crunet.io.atomic``).
Imports nothing from crunet but ``crunet.errors``, so training, interop and the command line can all use it."""
