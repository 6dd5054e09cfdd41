"""Model families; importing this package registers every builder."""

from crunet.models import crunet as _crunet  # noqa: F401
from crunet.models import dsfb_mobilenetv2 as _dsfb_mobilenetv2  # noqa: F401
from crunet.models import dsfb_resnet as _dsfb_resnet  # noqa: F401
from crunet.models import preresnet as _preresnet  # noqa: F401
from crunet.models import small as _small  # noqa: F401
from crunet.models._registry import create_model, get_builder, is_model, list_models, register_model

__all__ = ["create_model", "get_builder", "is_model", "list_models", "register_model"]
