"""The compress report: arms by training budget, and sharing against thinning by Welch's interval over seeds."""

from crunet.study.compress_grid import arm_options
from crunet.study.compress_report import report
from crunet.study.results_csv import COLUMNS, append_row


def _row(model: str, option: str, seed: int, top1: float) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(key=f"fashion-mnist/{model}/{option}/seed{seed}", dataset="fashion-mnist", model=model, option=option,
               seed=seed, params=1, macs=1, test_top1=top1, best_epoch=1, best_top1=top1, train_seconds=1.0,
               images_per_s=1.0, cpu_share=1.0)
    return row


def test_sharing_against_thinning_at_each_budget(tmp_path):
    arms = arm_options(2)
    for seed, (shared, thin) in enumerate(((93.0, 92.0), (93.2, 92.1), (92.9, 91.9))):
        append_row(tmp_path / "compress.csv", _row(*arms["b_svd"][0], seed, shared))
        append_row(tmp_path / "compress.csv", _row(*arms["e"][0], seed, thin))
    append_row(tmp_path / "compress.csv", _row(*arms["b_data"][0], 0, 93.5))
    text = report(tmp_path)
    assert "| (b) teacher converted into DSFB (svd bases) | 2 | 3 | 93.03 ± 0.15 |" in text
    line = next(x for x in text.splitlines() if x.startswith("| 2 | (b) teacher converted into DSFB (svd"))
    assert "| -1.03 |" in line and line.endswith("| sharing better |")
    assert "too few seeds (1 and 3)" in text  # the data-aware arm has one seed


def test_the_small_scale_reads_its_own_csv_and_says_its_scale(tmp_path):
    full, small = arm_options(20)["c"][0], arm_options(20, 3000)["c"][0]
    append_row(tmp_path / "compress-small.csv", _row(*small, 0, 85.0))
    append_row(tmp_path / "compress-small.csv", _row(*full, 1, 99.0))  # a full-scale row in the wrong file: not read
    text = report(tmp_path, "compress-small")
    assert "| (c) DSFB S16U1 from scratch, distilled | 20 | 1 | 85.00 |" in text
    assert "first 3,000 training images" in text and "--grid compress-small" in text


def test_the_cru_pair_is_compared_as_the_dsfb_pair_is(tmp_path):
    arms = arm_options(5)
    for seed, (shared, thin) in enumerate(((90.0, 91.0), (90.2, 91.1), (89.9, 90.9))):
        append_row(tmp_path / "compress.csv", _row(*arms["b_cru"][0], seed, shared))
        append_row(tmp_path / "compress.csv", _row(*arms["e_cru"][0], seed, thin))
    line = next(x for x in report(tmp_path).splitlines() if x.startswith("| 5 | (b cru) ResNeXt teacher factorized"))
    assert "| (e cru) thin ResNeXt from the teacher's largest channels | +0.97 |" in line
    assert line.endswith("| thinning better |")
