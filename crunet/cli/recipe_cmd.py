"""``crunet recipe list`` and ``crunet recipe show NAME [--data KIND|DIR] [--model NAME]``: the training recipes and
what one resolves to, each knob with where it comes from (``crunet.train.recipes``)."""

from __future__ import annotations

import argparse
import json

from crunet.data import IN_MEMORY_KINDS, detect_kind
from crunet.train import recipes

KINDS = (*IN_MEMORY_KINDS, "folder", "places365")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("recipe", help="the papers' training recipes: list them, show one's knobs and sources",
                              description="Training recipes (crunet train --recipe NAME): list them, or show what one "
                                          "sets for a data kind and a model, each value with where it comes from.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the shipped recipes").set_defaults(func=run_list)
    show = sub.add_parser("show", help="a recipe's knobs, resolved, with their sources")
    show.add_argument("recipe", help="a shipped recipe's name or a .toml file (an edited copy)")
    show.add_argument("--data", default=None,
                      help=f"a data kind ({', '.join(KINDS)}) or a data folder; default: none (the base knobs)")
    show.add_argument("--model", default=None, help="the model to train (a recipe may differ per model family)")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    for name in recipes.names():
        print(f"{name}: {recipes.load(name).title}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    recipe = recipes.load(args.recipe)
    kind = args.data if args.data is None or args.data in KINDS else detect_kind(args.data)
    print(f"# {recipe.name}: {recipe.title}")
    print(f"# source: {recipe.source}")
    print(f"# for data {kind or '(any)'}, model {args.model or '(any)'}; crunet train --recipe {args.recipe} fills "
          "these where the option is not given")
    for knob in recipe.explain(kind, args.model):
        chosen = f" [{knob.selector}]" if knob.selector else ""
        print(f"{knob.field} = {json.dumps(knob.value)}  # {knob.source}{chosen}")
    for note in recipe.notes:
        print(f"# note: {note}")
    return 0
