"""How ISBI 2012's errors fall with training compute: the budget study (appendix 07_budget).

    train the cpu recipe at more steps (width 16) and wider (32; 64 as the gpu
    recipe trains it) -> count each network's arithmetic (FLOPs per step from
    the model, times steps) and time it -> each error against compute, with
    the trend that would reach the paper's number
"""

from __future__ import annotations

from collections.abc import Sequence

from unetlib.errors import UnetlibError
from unetlib.recipe import preset
from unetlib.study import Study

__all__ = ["BUDGET_POINTS", "budget_study"]


#: The budget study of ISBI 2012 (appendix 07_budget): the cpu recipe with more training compute, along two axes:
#: steps at width 16, and the width (32 with the cpu recipe's 508² tiles; 64 as the gpu recipe trains it: 572² tiles,
#: Adam 5e-4). The first point is the cpu recipe itself. Ordered cheapest first, so a study stopped early has the
#: cheap points of both axes.
BUDGET_POINTS: dict[str, dict] = {
    "w16-2500": {},
    "w16-5000": {"train.iterations": 5000},
    "w16-10000": {"train.iterations": 10000},
    "w64-1500": {"train.width": 64, "train.tile": 572, "train.lr": 0.0005, "train.iterations": 1500},
    "w32-2500": {"train.width": 32},
    "w32-5000": {"train.width": 32, "train.iterations": 5000},
    "w16-20000": {"train.iterations": 20000},
    "w64-4000": {"train.width": 64, "train.tile": 572, "train.lr": 0.0005, "train.iterations": 4000},
}


def budget_study(seeds: Sequence[int] = (0,), units: Sequence = (0, 2), points: Sequence[str] | None = None) -> Study:
    """ISBI 2012's errors against training compute: :data:`BUDGET_POINTS` (or the named ``points``; the cpu
    recipe always runs first) x ``seeds`` x ``units`` (the cpu profile's folds 0 and 2)."""
    if points and set(points) - set(BUDGET_POINTS):
        raise UnetlibError(f"unknown budget points {sorted(set(points) - set(BUDGET_POINTS))}; "
                           f"choose from {list(BUDGET_POINTS)}")
    first = next(iter(BUDGET_POINTS))
    chosen = {p: c for p, c in BUDGET_POINTS.items() if not points or p == first or p in points}
    return Study(name="isbi2012-cpu-budget", recipe=preset("isbi2012", "cpu"), variants=chosen, seeds=tuple(seeds),
                 units=tuple(units), question="How do ISBI 2012's errors fall with training compute (more steps, a "
                 "wider network), and at what compute would they reach the paper's?")
