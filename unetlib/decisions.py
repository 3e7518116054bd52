"""The cpu recipe's choices, each decided over seeds against its alternative, and its reliability.

A choice of the recipe stands only when its alternative is no better beyond
the spread over seeds: :data:`DECISIONS` lists each dataset's alternatives as
variants of the recipe, :func:`seed_study` trains them with the recipe's
seeds (notebook 06_seeds), and :func:`reliability` says whether the recipe's
seeds land close enough together.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from unetlib import profiles
from unetlib.data import CTC_DATASETS, DIRECTIONS
from unetlib.errors import UnetlibError
from unetlib.protocols import BLOCKS, GAP, block_unit
from unetlib.recipe import preset
from unetlib.stats import flag_runs, over_seeds
from unetlib.study import Study

__all__ = ["DECISIONS", "seed_study", "both_sequences_study", "RELIABILITY_GOALS", "reliability"]


#: The choices of each dataset's cpu recipe, as variants of it (the first, "cpu", is the recipe itself):
#: a choice is kept only when its alternative is no better, beyond the spread over seeds.
DECISIONS: dict[str, dict[str, dict]] = {
    "isbi2012": {"cpu": {}, "w_c-1": {"class_weights": None}, "5000-steps": {"train.iterations": 5000},
                 "no-dropout": {"train.dropout": 0.0}, "lr-0.002": {"train.lr": 0.002}},
    "PhC-C2DH-U373": {"cpu": {}, "w_c-balanced": {"class_weights": "balanced"}, "split": {"tune_split": True},
                      "touching-copies": {"touching_copies": 1}},
    "DIC-C2DH-HeLa": {
        "cpu": {},
        "no-split": {"tune_split": False},
        "no-clipping": {"train.clip_grad": 0.0},
        "full-resolution": {"resample": 1.0, "train.tile": 508},
        "no-zoom": {"train.augment.scale": 0.0},
        "tta-flips": {"tta": "flips"},
    },
}


def seed_study(dataset: str, profile: str = "cpu", seeds: Sequence[int] = (0, 1, 2), *, decisions: bool = True,
               units: Sequence | None = None, variants: Sequence[str] | None = None,
               headline_seeds: Sequence[int] = ()) -> Study:
    """The seed study of a dataset's profile recipe: every unit of its experiment, with the decision variants.

    Seed 0 is the profile's own run (the reports' numbers); ``decisions=False``
    runs the recipe alone; ``variants`` names the alternatives to run (the
    recipe itself always runs; names another dataset has are skipped), None or
    empty for all. The alternatives (:data:`DECISIONS`) are those of the cpu
    recipe: other profiles run their recipe alone. Units: the profile's ISBI
    folds, or both CTC directions. ``headline_seeds``: more seeds of the recipe
    alone (its headline numbers; the alternatives keep ``seeds``).
    """
    base = preset(dataset, profile)
    choices = DECISIONS[dataset] if decisions and profile == "cpu" else {profile: {}}
    if variants:  # the recipe itself and the named alternatives this dataset has
        known = {v for table in DECISIONS.values() for v in table}
        if set(variants) - known:
            raise UnetlibError(f"unknown decision variants {sorted(set(variants) - known)}; "
                               f"choose from {sorted(known)}")
        baseline = next(iter(choices))
        choices = {v: c for v, c in choices.items() if v == baseline or v in variants}
    if units is None:  # the profile's ISBI folds (all five when it names none), both CTC directions
        folds = profiles.load(profile).isbi_folds
        units = (folds or tuple(range(5))) if dataset == "isbi2012" else tuple(DIRECTIONS)
    return Study(name=f"{dataset}-{profile}-seeds", recipe=base, variants=dict(choices), seeds=tuple(seeds),
                 units=tuple(units), question=f"How far apart do seeds of the {profile} recipe land, and does each "
                 "of its choices beat its alternative by more than that?",
                 more_seeds={next(iter(choices)): tuple(headline_seeds)} if headline_seeds else {})


def both_sequences_study(dataset: str, profile: str = "cpu", seeds: Sequence[int] = (0, 1, 2)) -> Study:
    """The profile's recipe of a cell dataset under the both-sequence protocol (appendix 08): trained on the
    annotated frames of both sequences but one held-out block of each (:func:`unetlib.protocols.ctc_block`),
    every block held out once, with ``seeds``."""
    if dataset not in CTC_DATASETS:
        raise UnetlibError(f"the both-sequence protocol is for the cell datasets ({', '.join(CTC_DATASETS)}), "
                           f"not {dataset}")
    return Study(name=f"{dataset}-{profile}-both-sequences", recipe=preset(dataset, profile), variants={profile: {}},
                 seeds=tuple(seeds), units=tuple(block_unit(b) for b in range(BLOCKS)),
                 question=f"What does the {profile} recipe give when, as in the paper, it trains on both sequences "
                          f"(all annotated frames but a held-out block of each, {GAP} frames apart)?")


#: the reliability goal of each experiment: the largest standard deviation over seeds of one unit's number
RELIABILITY_GOALS = {"isbi2012": ("rand_error", 0.01), "PhC-C2DH-U373": ("SEG", 0.03), "DIC-C2DH-HeLa": ("SEG", 0.03)}


def reliability(results: dict) -> pd.DataFrame:
    """Per dataset (``results``: dataset -> :class:`StudyResult`) and unit of the baseline recipe: the
    standard deviation over seeds of its number against :data:`RELIABILITY_GOALS`, and its flagged runs."""
    rows = []
    for dataset, result in results.items():
        metric, goal = RELIABILITY_GOALS[dataset]
        flagged = flag_runs(result)
        for unit in result.units:
            seeds = over_seeds(result.values(result.baseline, unit, metric).values())
            rows.append({"dataset": dataset, "unit": unit, "metric": metric, "n": seeds["n"], "sd": seeds["sd"],
                         "goal": goal, "met": bool(seeds["sd"] <= goal),
                         "flagged runs": sum(1 for f in flagged if f["unit"] == unit and f["variant"] == result.baseline)})
    return pd.DataFrame(rows)
