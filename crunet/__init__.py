"""crunet: parameter-sharing residual networks (CRU-Net, DSFB) and their baselines."""

from crunet.interop.timm_registry import install as _install_timm_registry
from crunet.layers.complexity import complexity, count_parameters
from crunet.models import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["complexity", "count_parameters", "create_model", "list_models", "register_model", "__version__"]

_install_timm_registry()  # registers the models in timm when (and only if) timm is imported
