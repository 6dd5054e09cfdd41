"""The size and cost columns of the DSFB paper (Kang & Kim, NeurIPS 2021) beside the numbers our models give.

ImageNet rows are counted at 224x224 with 1000 classes, CIFAR-10 rows at 32x32 with 10 classes, CIFAR-100 rows at
32x32 with 100 classes. The source's ImageNet "FLOPs" are multiply-accumulates; the paper's table gives none for CIFAR.
The CIFAR-100 rows are the source README's (ssregibility/Net_RL2 at 699db5a; later commits dropped the table). Same
columns as ``paper_tables.COLUMNS``.
"""

from __future__ import annotations

from crunet.analysis.paper_tables import COLUMNS, PaperEntry, table_rows

__all__ = ["COLUMNS", "DSFB_ENTRIES", "dsfb_table_rows"]


_IN, _C10, _C100 = "DSFB ImageNet", "DSFB CIFAR-10", "DSFB CIFAR-100"
_MACS = "published MACs are 0.3-0.6% above ours, which count convolutions and linear layers only"
_MV2 = ("the source's MACs for MobileNetV2-Shared exceed its own baseline's although sharing adds no computation; "
        "ours are equal")
_S16 = ("the source's table says 0.22 M; its definition (s=16/32/64, u=1/2/4, one basis per stage) gives 0.271 M "
        "(S16U0 or S10U1 would give 0.22 M)")


_C100_FLOPS = ("the source README's CIFAR-100 FLOPs (0.79, 1.05, 1.55 G) count a multiply-add as two: twice our MACs, "
               "within 1%")


def _cifar(method: str, setting: str, model: str, params_m: float, note: str = "") -> PaperEntry:
    return PaperEntry(_C10, method, setting, model, params_m, num_classes=10, image_size=32, note=note)


DSFB_ENTRIES = (
    PaperEntry(_IN, "ResNet-34", "unshared", "resnet34", 21.80, 3.66),
    PaperEntry(_IN, "ResNet34-DSFB", "S48U1* (double)", "dsfb_resnet34_s48u1_double", 11.79, 3.26, note=_MACS),
    PaperEntry(_IN, "ResNet-50", "unshared", "resnet50", 25.56, 4.09),
    PaperEntry(_IN, "ResNet50-DSFB", "Shared", "dsfb_resnet50_shared", 20.51, 4.11, note=_MACS),
    PaperEntry(_IN, "ResNet50-DSFB", "Shared++", "dsfb_resnet50_sharedpp", 18.26, 4.11, note=_MACS),
    PaperEntry(_IN, "ResNet-101", "unshared", "resnet101", 44.55, 7.80),
    PaperEntry(_IN, "ResNet101-DSFB", "Shared", "dsfb_resnet101_shared", 29.47, 7.83, note=_MACS),
    PaperEntry(_IN, "MobileNetV2", "unshared", "mobilenetv2", 3.51, 0.31),
    PaperEntry(_IN, "MobileNetV2-DSFB", "Shared", "dsfb_mobilenetv2_shared", 3.24, 0.33, note=_MV2),
    PaperEntry(_IN, "MobileNetV2-DSFB", "Shared++ (ECA)", "dsfb_mobilenetv2_sharedpp", 2.98, 0.33, note=_MV2),
    _cifar("ResNet-32", "unshared", "resnet32_cifar", 0.46),
    _cifar("ResNet32-DSFB", "S8U1", "dsfb_resnet32_s8u1", 0.151),
    _cifar("ResNet32-DSFB", "S16U1", "dsfb_resnet32_s16u1", 0.197),
    _cifar("ResNet32-DSFB", "S16U1* (double)", "dsfb_resnet32_s16u1_double", 0.246),
    _cifar("ResNet-56", "unshared", "resnet56_cifar", 0.85),
    _cifar("ResNet56-DSFB", "S8U1", "dsfb_resnet56_s8u1", 0.202),
    _cifar("ResNet56-DSFB", "S16U1", "dsfb_resnet56_s16u1", 0.22, note=_S16),
    _cifar("ResNet56-DSFB", "S16U1* (double)", "dsfb_resnet56_s16u1_double", 0.319),
    PaperEntry(_C100, "ResNet34-DSFB", "S8U1", "dsfb_resnet34_cifar100_s8u1", 5.87, num_classes=100, image_size=32,
               note=_C100_FLOPS),
    PaperEntry(_C100, "ResNet34-DSFB", "S16U1", "dsfb_resnet34_cifar100_s16u1", 6.49, num_classes=100,
               image_size=32, note=_C100_FLOPS),
    PaperEntry(_C100, "ResNet34-DSFB", "S32U1", "dsfb_resnet34_cifar100_s32u1", 7.73, num_classes=100,
               image_size=32, note=_C100_FLOPS),
)


def dsfb_table_rows() -> list[dict]:
    """The DSFB paper's ImageNet and CIFAR-10 figures, and the source's CIFAR-100 ones, beside our models."""
    return table_rows(DSFB_ENTRIES)
