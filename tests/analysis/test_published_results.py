"""The published errors the paper grids' reports print, as the papers and the DSFB source's README write them."""

import pytest

import crunet
from crunet.analysis.dsfb_tables import DSFB_ENTRIES
from crunet.analysis.paper_tables import PAPER_ENTRIES
from crunet.analysis.published_results import PUBLISHED


def _errors(table: str) -> dict[str, float]:
    return {r.name: r.top1_err for r in PUBLISHED[table].rows}


def test_dsfb_cifar10_as_the_paper_writes_it():
    assert _errors("dsfb-cifar10") == {
        "ResNet-32": 7.51, "ResNet32-S8U1": 8.08, "ResNet32-S16U1": 7.43, "ResNet32-S16U1*": 6.93,
        "ResNet-56": 6.97, "ResNet56-S8U1": 7.52, "ResNet56-S16U1": 7.46, "ResNet56-S16U1*": 6.30}


def test_dsfb_cifar100_as_the_source_readme_writes_it():
    assert _errors("dsfb-cifar100") == {"ResNet34-S8U1": 23.11, "ResNet34-S16U1": 22.64, "ResNet34-S32U1": 21.79}


def test_cru_imagenet_and_places365_as_the_paper_writes_them():
    assert _errors("cru-imagenet") == {"ResNet-50": 23.9, "ResNeXt-50 32x4d (authors' run)": 22.2,
                                       "CRU-Net-56 @x14 32x4d": 21.9}
    places = {r.name: (100 - r.top1_err, 100 - r.top5_err) for r in PUBLISHED["cru-places365"].rows}
    assert places == {"CRU-Net-116 @x28x14 32x4d": pytest.approx((56.60, 86.55)),
                      "ResNeXt-101 32x4d (authors' run)": pytest.approx((56.21, 86.25))}


def test_every_row_is_a_zoo_model_and_its_size_is_the_one_the_size_tables_hold():
    sizes = {e.model: e.params_m for e in DSFB_ENTRIES + PAPER_ENTRIES if e.params_m is not None}
    for table in PUBLISHED.values():
        for row in table.rows:
            assert row.model in crunet.list_models()
            if row.params_m is not None:
                assert sizes[row.model] == row.params_m, row.model
