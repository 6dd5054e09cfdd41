"""Pre-activation pieces: BatchNorm -> ReLU, optionally followed by a bias-free convolution."""

from __future__ import annotations

from torch import Tensor, nn

from crunet.layers.complexity import Cx, conv_cx, norm_cx


class BnAct(nn.Sequential):
    """BatchNorm -> ReLU. Never shared: BN statistics belong to one position in one unit."""

    def __init__(self, channels: int, bn_eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=bn_eps)
        self.act = nn.ReLU(inplace=True)

    def complexity(self, cx: Cx) -> Cx:
        return norm_cx(cx)


class BnActConv(nn.Module):
    """BN -> ReLU -> Conv (``BN_AC_Conv`` of the released CRU-Net code); padding keeps the size at stride 1."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 bn_eps: float = 1e-5):
        super().__init__()
        self.norm = BnAct(in_chs, bn_eps)
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, groups=groups,
                              bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.norm(x))

    def complexity(self, cx: Cx) -> Cx:
        conv = self.conv
        return conv_cx(norm_cx(cx), conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.groups)
