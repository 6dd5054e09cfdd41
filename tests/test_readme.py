"""The README a newcomer can finish: short, and every figure it keeps either checked here or dated with a commit.

- its study verdicts quote only numbers that the generated report (results/results.md, `crunet study report`) holds;
- its model tables are what the models count, and what the `crunet models` commands it quotes print;
- it, the docs and the code point only at things a reader of the repository can open.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from crunet.analysis.model_info import model_info
from crunet.cli.main import main
from crunet.models import list_models

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 400

# Figures of the verdicts that are not in results/results.md, each with the commit that measured it; the commit must
# stand in the verdicts beside it. Keep this short: a study number belongs in the generated report.
DATED: dict[str, str] = {}


def section(text: str, heading: str) -> str:
    """The body of the section whose heading line is ``heading``, up to the next heading of its level or above."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}")
    rest = text[start + 1 + len(heading):]
    ends = [m.start() for m in re.finditer(r"^(#+) ", rest, re.M) if len(m.group(1)) <= len(level)]
    return rest[: ends[0]] if ends else rest


def readme() -> str:
    return README.read_text()


# Measured figures: decimals (7.26, +0.38, -0.20), thousands with commas (365,338). Integers such as "3 seeds" or
# "20 epochs" describe the design, not a measurement.
NUMBER = re.compile(r"(?<![\w.])[+-]?(?:\d{1,3}(?:,\d{3})+|\d+\.\d+)(?![\w])")
MEAN_SD = re.compile(r"\d+\.\d+ ± \d+\.\d+")
INTERVAL = re.compile(r"[+-]\d+\.\d+ to [+-]\d+\.\d+")


def verdicts() -> str:
    heading = next(line for line in readme().splitlines() if line.startswith("### The verdicts"))
    return " ".join(section(readme(), heading).split())


def test_the_readme_is_short_enough_to_finish():
    lines = readme().count("\n")
    assert lines < MAX_LINES, f"README.md has {lines} lines; move narrative to docs/ (the limit is {MAX_LINES})"


def test_the_readme_starts_with_the_commands_of_a_fresh_machine():
    first = readme().splitlines()[:7]
    assert first[0] == "# crunet"
    body = "\n".join(first)
    assert "./scripts/setup train && ./scripts/get-fashion-mnist && .venv/bin/crunet train" in body
    assert "./scripts/setup test && .venv/bin/python -m pytest -q" in body
    assert '.venv/bin/python -m pytest -q -m "not slow"' in body


def test_the_verdicts_read_each_claim_at_5_and_at_20_epochs():
    text = verdicts()
    assert "5-epoch verdicts" in text and re.search(r"tier 3\*?\*? \(20 epochs", text, re.I)
    assert "is running" not in text  # tier 3 is complete: every claim has its 20-epoch reading
    headlines = re.findall(r'\*\*(?:CRU-Net|DSFB): "[^"]+"\. ([^*]+)\*\*', text)  # the verdict after each claim
    assert len(headlines) == 3
    for headline in headlines:
        assert "at 5 epochs" in headline and "at 20" in headline, headline
    assert "results/results.md" in text


def test_every_number_of_the_verdicts_is_in_the_generated_report():
    report = " ".join((ROOT / "results" / "results.md").read_text().split())
    text = verdicts()
    in_report = set(NUMBER.findall(report))
    missing = [n for n in NUMBER.findall(text) if n not in in_report and n not in DATED]
    assert not missing, f"the README's verdicts quote numbers results/results.md does not hold: {missing}"
    for pattern in (MEAN_SD, INTERVAL):
        phrases = [p for p in pattern.findall(text) if p not in report]
        assert not phrases, f"not in results/results.md: {phrases}"
    for figure, commit in DATED.items():
        assert figure in text and commit in text, (figure, commit)


def compression_verdict() -> str:
    """The README's answer to issue 31's question: its paragraph in "The GBTD toolkit and compression"."""
    body = section(readme(), "## The GBTD toolkit and compression")
    return " ".join(next(p for p in body.split("\n\n") if p.startswith("**Is sharing a better way")).split())


def test_every_number_of_the_compression_verdict_is_in_its_report():
    text = compression_verdict()
    report = " ".join((ROOT / "results" / "compress-small.md").read_text().split())
    assert "results/compress-small.md" in text and "3 seeds" in text
    missing = [n for n in NUMBER.findall(text) if n not in set(NUMBER.findall(report))]
    assert not missing, f"the compression verdict quotes numbers results/compress-small.md does not hold: {missing}"
    for pattern in (MEAN_SD, INTERVAL):
        phrases = [p for p in pattern.findall(text) if p not in report]
        assert not phrases, f"not in results/compress-small.md: {phrases}"


def test_the_number_extraction_sees_what_a_verdict_quotes():
    found = NUMBER.findall("crunet_small 7.26 ± 0.12 %, +0.38 points (-0.20 to +0.72), 365,338 parameters, 3 seeds")
    assert found == ["7.26", "0.12", "+0.38", "-0.20", "+0.72", "365,338"]


# --- the model tables -------------------------------------------------------------------------------------------

def zoo() -> str:
    text = readme()
    return text[text.index("\n## The model zoo\n"): text.index("\n## The study")]


def tables(text: str) -> list[tuple[int, list[str], list[list[str]]]]:
    """(position, header cells, rows of cells) of each Markdown table in ``text``."""
    found = []
    for m in re.finditer(r"(?:^\|.*\|\n)+", text, re.M):
        lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in m.group(0).splitlines()]
        found.append((m.start(), lines[0], lines[2:]))
    return found


SMALL = set(list_models("*_small*"))
CIFAR = set(list_models("*_cifar")) | set(list_models("dsfb_resnet[35][26]_*"))


def configuration(name: str) -> tuple[int, int]:
    """(classes, channels) the README's tables show a model with: the study's for the small family (Fashion-MNIST),
    CIFAR-10's for the CIFAR ResNets, ImageNet's for the rest."""
    if name in SMALL:
        return 10, 1
    if name in CIFAR:
        return 10, 3
    return 1000, 3


def table_rows() -> list[tuple[str, dict[str, str]]]:
    rows = []
    for _, header, body in tables(zoo()):
        for cells in body:
            m = re.fullmatch(r"`(\w+)`", cells[0])
            if m and cells[1]:
                rows.append((m.group(1), dict(zip(header[1:], cells[1:], strict=True))))
    return rows


def test_the_model_tables_cover_the_small_cifar_and_full_size_families():
    names = {name for name, _ in table_rows()}
    assert SMALL <= names and {"crunet56", "crunet116", "dsfb_resnet50_shared", "resnet32_cifar"} <= names
    assert len(names) == len(table_rows()), "a model is in two tables"


@pytest.mark.parametrize("name, row", table_rows(), ids=[name for name, _ in table_rows()])
def test_a_model_table_row_is_what_the_model_counts(name, row):
    classes, chans = configuration(name)
    info = model_info(name, classes, chans)
    params = row.get("params", row.get("params (ours)"))
    assert params == f"{info.params:,}", (name, classes, chans)
    if "GMACs" in row or "GMACs (ours)" in row:
        assert row.get("GMACs", row.get("GMACs (ours)")) == f"{info.macs / 1e9:.3f}"
    if "MMACs" in row:
        assert row["MMACs"] == f"{info.macs / 1e6:.1f}"
    if "MiB" in row:
        assert row["MiB"] == f"{info.mib:.1f}"


def test_the_crunet_models_commands_the_readme_quotes_print_its_tables(capsys):
    """Each `crunet models ...` the zoo quotes prints, for the models of the next table, that table's counts."""
    text = zoo()
    found = tables(text)
    readme_params = {name: row.get("params", row.get("params (ours)")) for name, row in table_rows()}
    checked = set()
    for m in re.finditer(r"`crunet models([^`]*)`", text):
        position, _, body = next(t for t in found if t[0] > m.start())
        names = {re.fullmatch(r"`(\w+)`", cells[0]).group(1) for cells in body if re.fullmatch(r"`(\w+)`", cells[0])}
        assert main(["models", *shlex.split(m.group(1))]) == 0
        printed = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:])
        for name in names & set(printed):
            assert printed[name] == readme_params[name], (m.group(0), name)
            checked.add(name)
    assert checked == set(readme_params), f"no quoted command prints {sorted(set(readme_params) - checked)}"


def test_the_default_configuration_figure_the_zoo_quotes():
    # "with the defaults, 1000 classes and 3 channels, `crunet_small` has 620,344 parameters"
    quoted = re.search(r"`crunet_small` has ([\d,]+) parameters", zoo()).group(1)
    assert quoted == f"{model_info('crunet_small').params:,}"


# --- references a reader can open ---------------------------------------------------------------------------------

UNOPENABLE = re.compile(r"cru-net\.md|dsfb\.md|\bissues? \d|\bsession \d|shared/spec", re.I)


def sources() -> list[Path]:
    files = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "scripts").iterdir())]
    for folder, pattern in (("crunet", "*.py"), ("benchmarks", "*.py"), ("benchmarks", "*.md"), ("tests", "*.py")):
        files += sorted((ROOT / folder).rglob(pattern))
    here = Path(__file__).resolve()
    return [f for f in files if f.is_file() and f != here and "gpu" not in f.relative_to(ROOT).parts]


def test_nothing_points_at_a_tracker_or_notes_the_repository_does_not_have():
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}" for f in sources()
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if UNOPENABLE.search(line)]
    assert not hits, "say it in plain words or name a file or section of the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("doc", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_opens(doc):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
    broken = [link for link in links if "://" not in link and not (doc.parent / link).exists()]
    assert not broken, broken
