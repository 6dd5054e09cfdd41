"""The layering, read from the source with ``ast`` (imports inside functions count too):

    errors -> layers, data, io -> models -> analysis, deploy, gbtd -> train, interop, bench -> study -> cli -> facade

A module may import its own package and the tiers below its own. Packages in one tier are siblings and import none
of each other; the facade (``crunet/__init__.py``, ``__main__.py``, ``timm.py``) may import anything. Inside a
package, two borrows are refused: a zoo file (one that registers models) is imported only by
``crunet/models/__init__.py``, and nothing in ``crunet.train`` but its ``__init__`` imports the trainer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "crunet"
TIERS = (("errors",), ("layers", "data", "io"), ("models",), ("analysis", "deploy", "gbtd"),
         ("train", "interop", "bench"), ("study",), ("cli",))
FACADE = ("__init__", "__main__", "timm")
TIER_OF = {part: i for i, parts in enumerate(TIERS) for part in parts}
TOPS = {"crunet.train": {"crunet.train.trainer"}}  # per package: modules only its __init__ may import


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every crunet import anywhere in the tree; ``from crunet import x`` names crunet.x."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "crunet":
                out += [(node.lineno, f"crunet.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return [(line, name) for line, name in out if name == "crunet" or name.startswith("crunet.")]


def top_part(name: str) -> str:
    """The first part below ``crunet`` ("models" for crunet.models.base); the facade for ``crunet`` itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def tier(part: str) -> int:
    if part in FACADE:
        return len(TIERS)
    if part not in TIER_OF:
        raise AssertionError(f"crunet.{part} is in no tier: add it to TIERS here and to the README's Layout")
    return TIER_OF[part]


def zoo_modules() -> set[str]:
    return {module_name(p) for p in (PACKAGE / "models").glob("*.py")
            if re.search(r"^@register_model\b", p.read_text(), re.M)}


def violations(source: Path, tree: ast.AST, zoo: set[str]) -> list[str]:
    me = module_name(source)
    part = top_part(me) if source.parent != PACKAGE else source.stem
    out = []
    for line, name in imported(tree):
        target = top_part(name)
        where = f"{source.relative_to(ROOT)}:{line} imports {name}"
        if part in FACADE:
            continue
        if target != part and tier(target) >= tier(part):
            out.append(f"{where}: crunet.{part} (tier {tier(part)}) may only import lower tiers")
        if name in zoo and me != "crunet.models":
            out.append(f"{where}: a zoo file is imported only by crunet/models/__init__.py")
        package = ".".join(me.split(".")[:2])
        if name in TOPS.get(package, ()) and me != package:
            out.append(f"{where}: only {package.replace('.', '/')}/__init__.py imports {name}")
    return out


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_tier():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in PACKAGE.glob("*.py")}
    assert not sorted(p for p in parts if p not in TIER_OF and p not in FACADE)


def test_imports_run_down_the_layering():
    zoo = zoo_modules()
    assert "crunet.models.dsfb_resnet" in zoo and "crunet.models.crunet" in zoo  # the zoo detection works
    found = [v for path in sources() for v in violations(path, ast.parse(path.read_text()), zoo)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module, code, message", [
    ("layers/residual_unit.py", "def f():\n    from crunet.models import create_model\n", "may only import lower"),
    ("interop/weights.py", "from crunet.train.checkpoint import load_checkpoint\n", "may only import lower"),
    ("models/dsfb_mobilenetv2.py", "from crunet.models.dsfb_resnet import CIFAR\n", "zoo file"),
    ("train/evaluate.py", "from crunet.train.trainer import train\n", "only crunet/train/__init__.py"),
    ("models/base.py", "import crunet\n", "may only import lower"),
])
def test_the_checker_refuses_upward_and_sibling_imports(module, code, message):
    path = PACKAGE / module
    found = violations(path, ast.parse(code), zoo_modules())
    assert len(found) == 1 and message in found[0], found


def test_readme_layout_lists_every_package_in_its_tier():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `crunet/(\w+)(?:/|\.py)` \| (\d) \|", section, re.M)
    assert {name: int(t) for name, t in listed} == {**TIER_OF, **dict.fromkeys(FACADE, len(TIERS))}
