"""torch.hub entry points: every registered crunet model, by its registered name.

    model = torch.hub.load("path/to/crunet", "crunet_small", source="local", num_classes=10)
    model = torch.hub.load("path/to/crunet", "crunet56", source="local", weights="crunet56.safetensors")

Keywords go to ``crunet.create_model`` (``num_classes``, ``in_chans``, design overrides such as ``bn_eps``).
``weights=`` loads a file written by ``crunet export`` or ``crunet convert-mxnet`` (strictly; nothing in it runs).
There are no hosted weights, so ``pretrained=True`` is refused with the way to get them.
"""

from crunet.models import get_builder as _get_builder
from crunet.models import list_models as _list_models

dependencies = ["torch"]


def _entry(name):
    builder = _get_builder(name)

    def entry(pretrained=False, weights=None, **kwargs):
        if pretrained:
            raise ValueError(f"{name}: crunet has no hosted weights; convert the released MXNet files "
                             f"(crunet convert-mxnet) or export a checkpoint (crunet export), then pass weights=FILE")
        if weights is None:
            return builder(**kwargs)
        from crunet.interop.weights import load_weights

        return load_weights(weights, name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = builder.__doc__
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
