"""The paper's claims about its ingredients, each put to a measured test (notebook 05_claims).

Every claim is a comparison of two arms over seeds, judged by
:func:`unetlib.stats.verdict` from the 95 % interval of the paired
difference: *supported* (the interval excludes 0 in the claimed direction),
*not detectable at this budget* (it includes 0), or *contradicted* (it
excludes 0 the other way).

- Claims that need training (elastic deformation and the training-set size,
  the weighted loss, large tiles and momentum, dropout) are studies
  (:class:`unetlib.study.Study`): recipe variants x seeds on one unit, run
  resumably by :func:`unetlib.study.run_study`. :func:`claim_studies` gives
  them per profile, with the reduced budget stated in each study's question.
- Claims about inference (averaging over rotated versions, mirror
  extrapolation at the border) reuse trained networks: :func:`tta_rows` and
  :func:`border_rows` evaluate each network every way and return study rows,
  so the same statistics apply.
- The speed claim is a measurement: :func:`inference_seconds`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetlib import data as datasets
from unetlib import geometry, profiles
from unetlib.errors import UnetlibError
from unetlib.inference import Tiling, predict
from unetlib.metrics import isbi2012_errors
from unetlib.model import BORDER, UNet
from unetlib.protocols import contiguous_folds
from unetlib.recipe import preset
from unetlib.runtime import pick_device
from unetlib.segment import Segmenter
from unetlib.stats import compare
from unetlib.study import Study, StudyResult, run_folder

__all__ = ["Claim", "CLAIMS", "claim_studies", "claim_row", "tta_rows", "border_rows", "inference_seconds",
           "speed_row", "equal_time_variant", "rows_result", "border_band", "budget"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and the comparison that tests it."""

    key: str
    title: str
    quote: str
    section: str
    metric: str  # the metric the verdict is about
    baseline: str  # arm the claim compares against (the ingredient present, or the paper's choice)
    variant: str  # the other arm
    claimed: int  # the sign the claim predicts for (variant - baseline) of the metric
    unit: Any = None  # the unit whose comparison is the verdict (None: the study's only unit)


CLAIMS = {
    "elastic": Claim(
        "elastic", "Elastic deformation is the key to learning from few images",
        "random elastic deformations of the training samples seem to be the key concept to train a "
        "segmentation network with very few annotated images", "3.1", "pixel_error",
        "2 sections", "2 sections, no elastic", +1),
    "weighted_loss": Claim(
        "weighted_loss", "The weighted loss separates touching cells",
        "the separating background labels between touching cells obtain a large weight in the loss function",
        "3, Fig. 3", "merges", "w0 = 10", "w0 = 0", +1),
    "large_tiles": Claim(
        "large_tiles", "Large tiles over a large batch (equal output pixels, equal steps)",
        "we favor large input tiles over a large batch size and hence reduce the batch to a single image",
        "3", "pixel_error", "1 large tile", "batch of 4 small tiles", +1),
    "large_tiles_time": Claim(
        "large_tiles_time", "Large tiles over a large batch (equal wall time)",
        "we favor large input tiles over a large batch size and hence reduce the batch to a single image",
        "3", "pixel_error", "1 large tile", "batch of 4 small tiles, equal time", +1),
    "momentum": Claim(
        "momentum", "High momentum (0.99) for SGD",
        "we use a high momentum (0.99) such that a large number of the previously seen training samples "
        "determine the update in the current optimization step", "3", "pixel_error",
        "SGD momentum 0.99", "SGD momentum 0.9", +1),
    "dropout": Claim(
        "dropout", "Dropout as implicit augmentation",
        "drop-out layers at the end of the contracting path perform further implicit data augmentation",
        "3.1", "pixel_error", "24 sections", "dropout 0", +1),
    "tta": Claim(
        "tta", "Averaging over rotated versions of the input",
        "averaged over 7 rotated versions of the input data", "4", "pixel_error", "d4 (8 symmetries)", "none", +1),
    "speed": Claim(
        "speed", "Segmentation of a 512x512 image takes less than a second on a recent GPU",
        "segmentation of a 512x512 image takes less than a second on a recent GPU", "abstract", "seconds",
        "", "", -1),
    "mirror": Claim(
        "mirror", "Mirror extrapolation at the image border",
        "to predict the pixels in the border region of the image, the missing context is extrapolated by "
        "mirroring the input image", "2, Fig. 2", "border_pixel_error", "mirror", "zero padding", +1),
}

ISBI_UNIT = 1  # the ISBI fold of the claims: not one the cpu profile reports


def budget(profile: str) -> dict:
    """Steps, tiles and width of the trained claims under ``profile`` (its file's ``claims`` entry)."""
    found = profiles.load(profile).claims
    if not found:
        raise UnetlibError(f"05_claims has no budget for profile {profile!r}; choose one of "
                           f"{', '.join(p for p in profiles.NAMES if profiles.load(p).claims)}")
    return found


def claim_studies(profile: str, seeds: Sequence[int] = (0, 1, 2)) -> dict[str, Study]:
    """The trained claims as studies: ``elastic`` (with ``dropout`` as a variant of its full-data arm),
    ``large_tiles`` (with the SGD momentum arms) and ``weighted_loss``."""
    b, seeds = budget(profile), tuple(seeds)
    train = {"train.width": b["width"], "train.iterations": b["iterations"], "train.tile": b["small"]}
    isbi = preset("isbi2012", profile).replace(tta="none", **train)
    sizes = b["sizes"]
    elastic = {}
    for n in sizes:
        elastic[f"{n} sections"] = {"train_images": n}
        elastic[f"{n} sections, no elastic"] = {"train_images": n, "train.augment.elastic_sigma": 0.0}
    elastic["dropout 0"] = {"train_images": sizes[-1], "train.dropout": 0.0}
    steps = f"{b['iterations']} steps at width {b['width']}, {b['small']}² tiles, no test-time averaging"
    studies = {"elastic": Study(
        "claim-elastic", isbi, elastic, seeds, (ISBI_UNIT,),
        question=f"Does elastic deformation matter more the fewer training sections there are? ISBI 2012 fold "
                 f"{ISBI_UNIT}, {', '.join(map(str, sizes))} of its 24 training sections; {steps}. The last arm "
                 f"(dropout 0) tests dropout on all sections.")}
    large = isbi.replace(**{"train.tile": b["large"]})
    small_batch = {"train.tile": b["small"], "train.batch": 4}
    studies["large_tiles"] = Study(
        "claim-large-tiles", large,
        {"1 large tile": {}, "batch of 4 small tiles": small_batch,
         "SGD momentum 0.99": {"train.optimizer": "sgd", "train.momentum": 0.99, "train.schedule": "constant",
                               "train.warmup": 0},
         "SGD momentum 0.9": {"train.optimizer": "sgd", "train.momentum": 0.9, "train.schedule": "constant",
                              "train.warmup": 0}},
        seeds, (ISBI_UNIT,),
        question=f"One {b['large']}² tile per step ({(b['large'] - 184) ** 2:,} output pixels) against a batch of "
                 f"4 {b['small']}² tiles ({4 * (b['small'] - 184) ** 2:,}), {b['iterations']} steps each; and the "
                 "paper's SGD with momentum 0.99 against 0.9 (lr 0.001, one large tile).")
    # the release's 4 flips at test time, as the claim was measured (before the cpu recipe adopted d4)
    hela = preset("DIC-C2DH-HeLa", profile).replace(tta="flips", **{"train.iterations": b["hela_iterations"]})
    studies["weighted_loss"] = Study(
        "claim-weighted-loss", hela, {"w0 = 10": {}, "w0 = 0": {"w0": 0.0}}, seeds, ("01->02",),
        question=f"Does Eq. 2's border term separate touching HeLa cells? The {profile} recipe (with the 4 flips) at "
                 f"{b['hela_iterations']} steps with w0 = 10 (paper) and w0 = 0 (class balance only), 01->02.")
    return studies


def equal_time_variant(result: StudyResult, budget_iterations: int) -> dict:
    """The batch arm with as many steps as fit in the large-tile arm's median training time."""
    def median_seconds(variant):
        times = [r["train_seconds"] for r in result.runs if r["variant"] == variant and r.get("train_seconds")]
        if not times:
            raise UnetlibError(f"no finished run of {variant!r} to time")
        return float(np.median(times))

    ratio = median_seconds("1 large tile") / median_seconds("batch of 4 small tiles")
    steps = max(1, int(round(budget_iterations * ratio)))
    return {"train.tile": result.study["variants"]["batch of 4 small tiles"]["train.tile"], "train.batch": 4,
            "train.iterations": steps}


def claim_row(claim: Claim, result: StudyResult, metric: str | None = None,
              higher_is_better: bool | None = None) -> dict:
    """The verdict row of ``claim`` from ``result``: effect (variant - baseline), 95 % interval, n, verdict.

    On ``claim.metric`` the claimed direction is ``claim.claimed``; on another ``metric`` the claim is that
    the variant (the arm without the paper's ingredient) does worse in it.
    """
    if metric is None or metric == claim.metric:
        metric, claimed = claim.metric, claim.claimed
    else:
        better = result.metrics.get(metric, False) if higher_is_better is None else higher_is_better
        claimed = -1 if better else 1
    table = compare(result, metric, claim.baseline, claimed=claimed, higher_is_better=higher_is_better,
                    with_mean=False)
    unit = claim.unit if claim.unit is not None else result.units[0]
    rows = table[(table.variant == claim.variant) & (table.unit == unit)] if len(table) else table
    if not len(rows):
        raise UnetlibError(f"claim {claim.key}: no paired runs of {claim.variant!r} and {claim.baseline!r}")
    row = rows.iloc[0]
    return {"claim": claim.title, "section": claim.section, "metric": metric,
            "comparison": f"{claim.variant} - {claim.baseline}", "baseline": row["baseline"],
            "variant": row["variant_mean"], "effect": row["difference"], "low": row["low"], "high": row["high"],
            "n": int(row["n"]), "verdict": row["verdict"]}


# --------------------------------------------------------------------------- #
# Inference-only claims on trained networks
# --------------------------------------------------------------------------- #
def _isbi_test(split_unit: int, folds: int = 5, root=None):
    isbi = datasets.load_isbi2012(root)
    split = contiguous_folds(len(isbi.train_images), folds)[split_unit]
    return isbi.train_images[list(split.test)], isbi.train_labels[list(split.test)]


def tta_rows(result: StudyResult, variant: str, out_dir: str | Path, root=None,
             modes: Sequence[str] = ("none", "flips", "d4")) -> list[dict]:
    """Each trained ISBI network of ``variant`` evaluated with every test-time averaging: study rows."""
    rows = []
    for run in (r for r in result.runs if r["variant"] == variant):
        images, labels = _isbi_test(run["unit"], result.study.get("folds", 5), root)
        segmenter = _segmenter(run, out_dir)
        for mode in modes:
            scores = isbi2012_errors(segmenter.p_cell(images, tta=mode), labels)
            rows.append({"variant": _TTA_NAMES.get(mode, mode), "seed": run["seed"], "unit": run["unit"],
                         "pixel_error": float(scores.pixel_error), "rand_error": float(scores.rand_error),
                         "warping_error": float(scores.warping_error), "final_loss": run["final_loss"]})
    return rows


_TTA_NAMES = {"d4": "d4 (8 symmetries)", "flips": "flips (4)", "none": "none"}


def border_rows(result: StudyResult, variant: str, out_dir: str | Path, root=None) -> list[dict]:
    """Each trained ISBI network of ``variant``, with mirror extrapolation and with zero padding: the pixel
    error within :data:`~unetlib.model.BORDER` pixels of the image border and in the interior (study rows)."""
    rows = []
    for run in (r for r in result.runs if r["variant"] == variant):
        images, labels = _isbi_test(run["unit"], result.study.get("folds", 5), root)
        segmenter = _segmenter(run, out_dir)
        band = border_band(images.shape[-2:])
        truth = labels > 0
        for padding, name in (("mirror", "mirror"), ("zero", "zero padding")):
            tiling = dataclasses.replace(segmenter.default_tiling(), padding=padding)
            wrong = (segmenter.p_cell(images, tiling=tiling) > 0.5) != truth
            rows.append({"variant": name, "seed": run["seed"], "unit": run["unit"],
                         "border_pixel_error": float(wrong[:, band].mean()),
                         "interior_pixel_error": float(wrong[:, ~band].mean()), "final_loss": run["final_loss"]})
    return rows


def border_band(shape: tuple[int, int], width: int = BORDER) -> np.ndarray:
    """True within ``width`` pixels of the border (:func:`unetlib.geometry.border_band`)."""
    return geometry.border_band(shape, width)


def _segmenter(run: dict, out_dir: str | Path) -> Segmenter:
    return Segmenter.load(run_folder(out_dir, run["variant"], run["seed"]) / run["result"]["checkpoint"])


def inference_seconds(width: int, size: int = 512, repeats: int = 3, device: str | None = None,
                      tta: str = "none") -> dict:
    """Seconds to segment one ``size``² image with a fresh U-Net of ``width`` (the paper's: 64), median of
    ``repeats`` after one warm-up, on ``device`` (None: CUDA when available)."""
    torch.manual_seed(0)
    model = UNet(width=width).eval()
    image = np.random.default_rng(0).integers(0, 255, (size, size)).astype(np.uint8)
    dev = pick_device(device)
    tiling = Tiling(device=str(dev), progress=False)
    times = []
    for i in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        predict(model, image, tta=tta, tiling=tiling)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return {"width": width, "size": size, "device": dev.type, "tta": tta, "seconds": float(np.median(times)),
            "repeats": repeats}


def speed_row(measured: dict) -> dict:
    """The speed claim's row: supported or contradicted on a GPU (under 1 s or not); on a CPU only the time."""
    claim = CLAIMS["speed"]
    seconds = measured["seconds"]
    if measured["device"] == "cuda":
        verdict = "supported" if seconds < 1.0 else "contradicted"
    else:
        verdict = "not testable here: no GPU (the claim is about one)"
    return {"claim": claim.title, "section": claim.section, "metric": "seconds",
            "comparison": f"width {measured['width']}, {measured['size']}² image, {measured['device']}",
            "baseline": 1.0, "variant": seconds, "effect": seconds - 1.0, "low": float("nan"),
            "high": float("nan"), "n": measured["repeats"], "verdict": verdict}


def rows_result(rows: list[dict], baseline: str, dataset: str, units: Sequence) -> StudyResult:
    """Rows of an inference-only comparison as a :class:`StudyResult` (``baseline`` first)."""
    variants = [baseline] + sorted({r["variant"] for r in rows} - {baseline})
    spec = {"name": "inference", "recipe": {"dataset": dataset}, "variants": {v: {} for v in variants},
            "seeds": sorted({r["seed"] for r in rows}), "units": list(units)}
    return StudyResult(study=spec, runs=rows)

