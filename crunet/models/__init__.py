"""Model families; importing this package registers every builder.

A family's zoo file registers its models (``crunet.py``: CRU-Net and the pre-activation baselines, ``small.py``: the
small-image models, both built by ``PreActResNet``; ``dsfb_resnet.py`` and ``dsfb_mobilenetv2.py``: the DSFB
networks with their unshared baselines, class and zoo in one file). Only this module imports a zoo file."""

from crunet.models import crunet as _crunet  # noqa: F401
from crunet.models import dsfb_mobilenetv2 as _dsfb_mobilenetv2  # noqa: F401
from crunet.models import dsfb_resnet as _dsfb_resnet  # noqa: F401
from crunet.models import small as _small  # noqa: F401
from crunet.models._registry import create_model, get_builder, is_model, list_models, register_model

__all__ = ["create_model", "get_builder", "is_model", "list_models", "register_model"]
