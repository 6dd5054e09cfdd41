"""The errors the papers publish for the tables that ``crunet study run <table>`` reproduces, by our model names.

Where each number is written: the DSFB CIFAR-10 table in the paper (Kang & Kim, NeurIPS 2021), the DSFB CIFAR-100
table in its source's README (ssregibility/Net_RL2 at 699db5a: later commits dropped it), and CRU-Net's ImageNet-1k
and Places365 results in its paper (arXiv 1703.02180; Places365 written there as accuracy). How the source picked
each number is in ``PublishedTable.chosen``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    model: str  # our zoo name
    name: str  # as the source writes it
    top1_err: float  # percent
    params_m: float | None = None  # as the source writes it
    top5_err: float | None = None
    note: str = ""


@dataclass(frozen=True)
class PublishedTable:
    title: str
    source: str
    chosen: str  # which epoch's test error the source reports
    rows: tuple[Published, ...]

    def of(self, model: str) -> Published | None:
        return next((r for r in self.rows if r.model == model), None)


_BEST = "the best test-set epoch of 300 (the source's scripts keep the highest test accuracy)"
_S16 = "0.22 M in the source's table; its definition gives 0.271 M (crunet table)"

PUBLISHED = {
    "dsfb-cifar10": PublishedTable(
        "DSFB, CIFAR-10", "the DSFB paper's CIFAR-10 table (Kang & Kim, NeurIPS 2021)", _BEST, (
            Published("resnet32_cifar", "ResNet-32", 7.51, 0.46),
            Published("dsfb_resnet32_s8u1", "ResNet32-S8U1", 8.08, 0.151),
            Published("dsfb_resnet32_s16u1", "ResNet32-S16U1", 7.43, 0.197),
            Published("dsfb_resnet32_s16u1_double", "ResNet32-S16U1*", 6.93, 0.246),
            Published("resnet56_cifar", "ResNet-56", 6.97, 0.85),
            Published("dsfb_resnet56_s8u1", "ResNet56-S8U1", 7.52, 0.202),
            Published("dsfb_resnet56_s16u1", "ResNet56-S16U1", 7.46, 0.22, note=_S16),
            Published("dsfb_resnet56_s16u1_double", "ResNet56-S16U1*", 6.30, 0.319),
        )),
    "dsfb-cifar100": PublishedTable(
        "DSFB, CIFAR-100", "the DSFB source's README, CIFAR-100 table (ssregibility/Net_RL2 at 699db5a)", _BEST, (
            Published("dsfb_resnet34_cifar100_s8u1", "ResNet34-S8U1", 23.11, 5.87),
            Published("dsfb_resnet34_cifar100_s16u1", "ResNet34-S16U1", 22.64, 6.49),
            Published("dsfb_resnet34_cifar100_s32u1", "ResNet34-S32U1", 21.79, 7.73),
        )),
    "cru-imagenet": PublishedTable(
        "CRU-Net, ImageNet-1k", "the CRU-Net paper's Tables 1 and 3 (single 224 crop of the validation set)",
        "the trained model's (the paper does not say that an epoch was chosen)", (
            Published("preresnet50", "ResNet-50", 23.9, 25.5),
            Published("preresnext50_32x4d", "ResNeXt-50 32x4d (authors' run)", 22.2, 25.0),
            Published("crunet56", "CRU-Net-56 @x14 32x4d", 21.9, 25.5),
        )),
    "cru-places365": PublishedTable(
        "CRU-Net, Places365-Standard", "the CRU-Net paper's Table 5 (10-crop validation, written as accuracy)",
        "the trained model's (the paper does not say that an epoch was chosen)", (
            Published("preresnext101_32x4d", "ResNeXt-101 32x4d (authors' run)", round(100 - 56.21, 2), None,
                      round(100 - 86.25, 2)),
            Published("crunet116", "CRU-Net-116 @x28x14 32x4d", round(100 - 56.60, 2), 43.7, round(100 - 86.55, 2)),
        )),
}
