"""Studies: grids of training runs that test the papers' claims, run resumably, and the report regenerated from
their CSVs (``crunet study run`` / ``crunet study report``)."""

from crunet.study.grid import GRIDS, RECIPES, Recipe, RunSpec, grid
from crunet.study.runner import GridPaths, run_grid

__all__ = ["GRIDS", "RECIPES", "GridPaths", "Recipe", "RunSpec", "grid", "run_grid"]
