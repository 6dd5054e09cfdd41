"""The pre-activation baselines of the paper's Tables 1-4: ResNet, ResNeXt, N x 1d and Wide ResNet."""

from __future__ import annotations

from crunet.models._registry import register_model
from crunet.models.design import NetCfg, bottleneck_stages
from crunet.models.preact_resnet import PreActResNet

DEPTHS_50, DEPTHS_101, DEPTHS_200 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 24, 36, 3)

PRERESNET50 = NetCfg(bottleneck_stages(DEPTHS_50, (64, 128, 256, 512), 1))
PRERESNET101 = NetCfg(bottleneck_stages(DEPTHS_101, (64, 128, 256, 512), 1))
PRERESNET200 = NetCfg(bottleneck_stages(DEPTHS_200, (64, 128, 256, 512), 1))
PRERESNEXT50_32X4D = NetCfg(bottleneck_stages(DEPTHS_50, (128, 256, 512, 1024), 32))
PRERESNEXT50_2X40D = NetCfg(bottleneck_stages(DEPTHS_50, (80, 160, 320, 640), 2))
PRERESNEXT50_136X1D = NetCfg(bottleneck_stages(DEPTHS_50, (136, 272, 544, 1088), 136))
PRERESNEXT50_NX1D = NetCfg(bottleneck_stages(DEPTHS_50, (136, 272, 544, 1088), None))
PRERESNEXT101_32X4D = NetCfg(bottleneck_stages(DEPTHS_101, (128, 256, 512, 1024), 32))
PRERESNEXT101_64X4D = NetCfg(bottleneck_stages(DEPTHS_101, (256, 512, 1024, 2048), 64))
PREWRN50_2 = NetCfg(bottleneck_stages(DEPTHS_50, (128, 256, 512, 1024), 1))


@register_model
def preresnet50(**kwargs):
    """ResNet-50, 1x64d."""
    return PreActResNet.create("preresnet50", PRERESNET50, **kwargs)


@register_model
def preresnet101(**kwargs):
    """ResNet-101, 1x64d."""
    return PreActResNet.create("preresnet101", PRERESNET101, **kwargs)


@register_model
def preresnet200(**kwargs):
    """ResNet-200, 1x64d (the paper's Tables 3-4 reference)."""
    return PreActResNet.create("preresnet200", PRERESNET200, **kwargs)


@register_model
def preresnext50_32x4d(**kwargs):
    """ResNeXt-50, R=32 Tuckers of rank 4 in conv2."""
    return PreActResNet.create("preresnext50_32x4d", PRERESNEXT50_32X4D, **kwargs)


@register_model
def preresnext50_2x40d(**kwargs):
    """ResNeXt-50, 2x40d (Table 2)."""
    return PreActResNet.create("preresnext50_2x40d", PRERESNEXT50_2X40D, **kwargs)


@register_model
def preresnext50_136x1d(**kwargs):
    """ResNeXt-50, 136x1d (Table 2)."""
    return PreActResNet.create("preresnext50_136x1d", PRERESNEXT50_136X1D, **kwargs)


@register_model
def preresnext50_nx1d(**kwargs):
    """ResNeXt-50, N x 1d: depthwise 3x3 (R = channels, Tables 1-2)."""
    return PreActResNet.create("preresnext50_nx1d", PRERESNEXT50_NX1D, **kwargs)


@register_model
def preresnext101_32x4d(**kwargs):
    """ResNeXt-101, 32x4d (Table 4)."""
    return PreActResNet.create("preresnext101_32x4d", PRERESNEXT101_32X4D, **kwargs)


@register_model
def preresnext101_64x4d(**kwargs):
    """ResNeXt-101 wider, 64x4d (Table 4)."""
    return PreActResNet.create("preresnext101_64x4d", PRERESNEXT101_64X4D, **kwargs)


@register_model
def prewrn50_2(**kwargs):
    """Wide ResNet-50-2 (1x128d)."""
    return PreActResNet.create("prewrn50_2", PREWRN50_2, **kwargs)
