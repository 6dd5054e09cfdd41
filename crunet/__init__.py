"""crunet: parameter-sharing residual networks (CRU-Net, DSFB) and their baselines."""

from crunet.layers.complexity import complexity, count_parameters
from crunet.models import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["complexity", "count_parameters", "create_model", "list_models", "register_model", "__version__"]
