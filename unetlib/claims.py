"""The paper's claims about its ingredients, each tested where its mechanism can act (notebook 05_claims).

A claim is a comparison of two arms of one study (variants of a recipe, paired
by seed): the arm with the paper's ingredient and the arm without it, in a
metric named in words a reader knows, with the direction the paper predicts
and the smallest difference that would matter (its *practical size*). Before
any "no effect" word, a *control* checks in the same runs that the mechanism
can act at all: that a few-images regime exists (2 sections measurably worse
than 24) for elastic deformation and dropout, that the networks learned (better
than a constant prediction by a stated margin), that the HeLa network finds
cells. The verdict (:func:`decide`):

    control failed -> "not testable at this budget" (with the reason)
    -> the 95 % interval of the paired difference excludes 0: "supported" or "contradicted"
    -> it lies within +-practical size: "no effect larger than +-X"
    -> else "undecided": add a seed to the claim's arms (up to MAX_SEEDS) and decide again

The studies (:func:`claim_studies`) take their budget from the profile file's
``claims`` entry; the budget of elastic deformation and dropout comes from a
pilot (:func:`pilot_study`) that trains the few-section and all-section arms at
several step counts, so that the few-images regime is shown, not assumed. The
speed claim is a measurement (:func:`inference_seconds`); the large-tile claim
is also one of throughput (:func:`tile_throughput`).
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from unetlib import data as datasets
from unetlib import geometry, profiles
from unetlib.errors import UnetlibError
from unetlib.inference import Tiling, predict
from unetlib.metrics import isbi2012_errors
from unetlib.model import BORDER, UNet, output_size
from unetlib.protocols import contiguous_folds
from unetlib.recipe import preset
from unetlib.runtime import autocast, pick_device, to_channels_last
from unetlib.stats import NOT_TESTABLE, SUPPORTED, UNDECIDED, t_interval, verdict
from unetlib.study import Study, StudyResult
from unetlib.train import weighted_cross_entropy

__all__ = ["Claim", "CLAIMS", "METRIC_NAMES", "MAX_SEEDS", "budget", "claim_studies", "pilot_study", "decide",
           "controls", "control_of", "constant_prediction", "sentence", "paired_sd", "seeds_needed", "undecided",
           "tile_throughput", "throughput_row", "inference_seconds", "speed_row", "border_band"]

#: A claim still undecided after this many seeds per arm is reported as undecided.
MAX_SEEDS = 6
ISBI_UNIT = 1  # the ISBI fold of the claims: not one the cpu profile reports
#: The metrics of the claims, in words a reader knows.
METRIC_NAMES = {
    "pixel_error": "pixel error (ISBI: 1 - the best F-score over thresholds)",
    "border_error": "border misclassification rate (P(cell) > 0.5, within 92 px of the image border)",
    "SEG": "SEG (Cell Tracking Challenge)",
    "merges": "merged cells (one predicted object the match of two or more annotated cells)",
    "output_pixels_per_second": "output pixels per second of training",
    "seconds": "seconds for one 512x512 image",
}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and the comparison that tests it.

    ``claimed`` is the sign the paper predicts for (variant - baseline) of ``metric``; ``practical`` the
    smallest difference that would matter; ``control`` the key of the condition (:func:`controls`) under
    which the mechanism can act."""

    key: str
    title: str
    quote: str
    section: str
    study: str
    metric: str
    baseline: str
    variant: str
    claimed: int
    practical: float
    control: str
    unit: Any = None


CLAIMS = {c.key: c for c in (
    Claim("elastic", "Elastic deformation is the key to learning from few images",
          "random elastic deformations of the training samples seem to be the key concept to train a segmentation "
          "network with very few annotated images", "3.1", "regime", "pixel_error", "few", "few, no elastic", +1,
          0.005, "regime"),
    Claim("dropout", "Dropout as implicit data augmentation",
          "drop-out layers at the end of the contracting path perform further implicit data augmentation", "3.1",
          "regime", "pixel_error", "few", "few, no dropout", +1, 0.005, "regime"),
    Claim("tta", "Averaging over rotated versions of the input", "averaged over 7 rotated versions of the input data",
          "4", "regime", "pixel_error", "all, d4", "all", +1, 0.002, "learned"),
    Claim("mirror", "Mirror extrapolation at the image border",
          "to predict the pixels in the border region of the image, the missing context is extrapolated by "
          "mirroring the input image", "2, Fig. 2", "regime", "border_error", "all", "all, zero padding", +1, 0.01,
          "learned"),
    Claim("momentum", "High momentum (0.99) for SGD",
          "we use a high momentum (0.99) such that a large number of the previously seen training samples "
          "determine the update in the current optimization step", "3", "optimiser", "pixel_error",
          "SGD momentum 0.99", "SGD momentum 0.9", +1, 0.005, "learned"),
    Claim("large_tiles", "Large tiles over a large batch (equal wall time)",
          "we favor large input tiles over a large batch size and hence reduce the batch to a single image", "3",
          "tiles", "pixel_error", "1 large tile", "batch of 4 small tiles, equal time", +1, 0.005, "learned"),
    Claim("weighted_loss", "The weighted loss separates touching cells",
          "the separating background labels between touching cells obtain a large weight in the loss function",
          "3, Fig. 3", "weighted_loss", "merges", "w0 = 10, components", "w0 = 0, components", +1, 2.0, "finds_cells"),
    Claim("weighted_loss_seg", "The weighted loss separates touching cells (SEG)",
          "the separating background labels between touching cells obtain a large weight in the loss function",
          "3, Fig. 3", "weighted_loss", "SEG", "w0 = 10, components", "w0 = 0, components", -1, 0.02, "finds_cells"),
)}
#: How much better than a constant prediction (in pixel error) a network must be to have learned.
LEARNED_MARGIN = 0.02
#: The SEG a HeLa network must reach with every seed to count as finding cells.
FINDS_CELLS = 0.3


def budget(profile: str) -> dict:
    """Steps, tiles and width of the trained claims under ``profile`` (its file's ``claims`` entry)."""
    found = profiles.load(profile).claims
    if not found:
        raise UnetlibError(f"05_claims has no budget for profile {profile!r}; choose one of "
                           f"{', '.join(p for p in profiles.NAMES if profiles.load(p).claims)}")
    return found


def claim_studies(profile: str, seeds: Sequence[int] = (0, 1, 2), more_seeds: dict | None = None) -> dict[str, Study]:
    """The claims' studies under ``profile``'s budget: ``regime`` (few and all ISBI sections: elastic deformation,
    dropout, test-time averaging, mirror extrapolation), ``optimiser`` (SGD momentum at equal effective step
    size), ``tiles`` (one large tile against a batch of small ones at equal wall time; the steps of the batch arm
    from the measured throughput, :func:`tile_throughput`) and ``weighted_loss`` (HeLa, Eq. 2's border term, with
    and without splitting touching cells). ``more_seeds``: study -> {arm: seeds} (claims still undecided)."""
    b, seeds, more = budget(profile), tuple(seeds), more_seeds or {}
    common = {"train.width": b["width"], "train.tile": b["tile"], "tta": "none"}
    isbi = preset("isbi2012", profile).replace(**common)
    few, steps = b["few"], b["steps"]
    regime = {
        "all": {"train.iterations": steps},
        "few": {"train_images": few, "train.iterations": steps},
        "few, no elastic": {"train_images": few, "train.iterations": steps, "train.augment.elastic_sigma": 0.0},
        "few, no dropout": {"train_images": few, "train.iterations": steps, "train.dropout": 0.0},
        "all, d4": {"train.iterations": steps, "tta": "d4"},
        "all, zero padding": {"train.iterations": steps, "train.augment.padding": "zero"},
    }
    studies = {"regime": Study(
        "claim-regime", isbi, regime, seeds, (ISBI_UNIT,), more_seeds=more.get("regime", {}),
        question=f"ISBI 2012 fold {ISBI_UNIT}: {few} of the 24 training sections (evenly spaced) against all, "
                 f"{steps} steps at width {b['width']}, {b['tile']}² tiles: with and without elastic deformation and "
                 f"dropout (on {few}); all sections with and without averaging over the 8 symmetries, and trained and "
                 "applied with mirror extrapolation or zero padding.")}
    sgd = {"train.optimizer": "sgd", "train.schedule": "constant", "train.warmup": 0,
           "train.iterations": b["sgd_steps"]}
    studies["optimiser"] = Study(
        "claim-optimiser", isbi, {"SGD momentum 0.99": {**sgd, "train.momentum": 0.99, "train.lr": 0.001},
                                  "SGD momentum 0.9": {**sgd, "train.momentum": 0.9, "train.lr": 0.01}},
        seeds, (ISBI_UNIT,), more_seeds=more.get("optimiser", {}),
        question=f"The paper's SGD with momentum 0.99 (lr 0.001) against momentum 0.9 at the same effective step "
                 f"size lr / (1 - momentum) = 0.1 (lr 0.01), {b['sgd_steps']} steps, one {b['tile']}² tile per step "
                 "(a batch of one, the paper's), all sections.")
    large, small = b["large_tile"], b["tile"]
    studies["tiles"] = Study(
        "claim-tiles", isbi, {"1 large tile": {"train.tile": large, "train.iterations": b["tile_steps"]},
                              "batch of 4 small tiles, equal time": {
                                  "train.tile": small, "train.batch": 4, "train.iterations": b["batch_steps"]}},
        seeds, (ISBI_UNIT,), more_seeds=more.get("tiles", {}),
        question=f"One {large}² tile per step ({output_size(large) ** 2:,} output pixels) for {b['tile_steps']} steps "
                 f"against a batch of four {small}² tiles ({4 * output_size(small) ** 2:,}) for {b['batch_steps']} "
                 "steps, the same training time on a 2-core CPU (the steps from the measured throughput).")
    hela = preset("DIC-C2DH-HeLa", profile).replace(**{"train.iterations": b["hela_steps"]})
    studies["weighted_loss"] = Study(
        "claim-weighted-loss", hela,
        {"w0 = 10": {}, "w0 = 0": {"w0": 0.0}, "w0 = 10, components": {"tune_split": False},
         "w0 = 0, components": {"w0": 0.0, "tune_split": False}},
        seeds, ("01->02",), more_seeds=more.get("weighted_loss", {}),
        question=f"DIC-HeLa 01->02, the {profile} recipe at {b['hela_steps']} steps with Eq. 2's border term (w0 = 10, "
                 "the paper's) and without (w0 = 0), each cut into instances by connected components alone and with "
                 "touching cells split at the cores of P(cell) (the recipe's post-processing, which can do part of "
                 "what the border term does).")
    return studies


def pilot_study(profile: str, steps: Sequence[int], seed: int = 0) -> Study:
    """The pilot that decides the steps of the few-images regime: the few-section and all-section arms of the
    ``regime`` study at each of ``steps``, one seed; each run records its training loss and its held-out loss."""
    b = budget(profile)
    isbi = preset("isbi2012", profile).replace(**{"train.width": b["width"], "train.tile": b["tile"], "tta": "none"})
    variants = {f"{arm}, {n} steps": {"train.iterations": int(n), **({"train_images": b["few"]} if arm == "few" else {})}
                for n in steps for arm in ("all", "few")}
    return Study("claim-pilot", isbi, variants, (seed,), (ISBI_UNIT,),
                 question=f"At how many steps does a network trained on {b['few']} sections fall measurably behind one "
                          "trained on all 24 (the few-images regime), while its held-out loss stops falling?")


# --------------------------------------------------------------------------- #
# Controls and verdicts
# --------------------------------------------------------------------------- #
def constant_prediction(root=None, fold: int = ISBI_UNIT) -> float:
    """The ISBI pixel error of a network that predicts one constant value everywhere (it has learned nothing)."""
    isbi = datasets.load_isbi2012(root)
    test = list(contiguous_folds(len(isbi.train_images), 5)[fold].test)
    return float(isbi2012_errors(np.full(isbi.train_labels[test].shape, 0.5, np.float32),
                                 isbi.train_labels[test]).pixel_error)


def controls(results: dict[str, StudyResult], constant: float) -> dict[str, tuple[bool, str]]:
    """Each control (key -> passed, what was found), from the claims' studies and the constant prediction's
    pixel error: ``regime`` (the few-section arm worse than all sections: its interval above 0), ``learned:STUDY``
    (every ISBI run of the study at least :data:`LEARNED_MARGIN` below the constant prediction),
    ``finds_cells`` (every HeLa run of the paper's arm reaches SEG :data:`FINDS_CELLS`)."""
    found = {}
    regime = results.get("regime")
    if regime is not None:
        d = _paired(regime, "pixel_error", "all", "few")
        _, low, high = t_interval(d)
        ok = len(d) >= 2 and low > 0
        found["regime"] = (ok, f"{len(d)} seeds: {regime.study['variants']['few'].get('train_images')} sections "
                               f"{'worse' if ok else 'not measurably worse'} than all 24 by "
                               f"{np.mean(d) if d else math.nan:+.4f} (95 % interval {low:+.4f} to {high:+.4f})")
    for key in ("regime", "optimiser", "tiles"):
        if key not in results:
            continue
        runs = [r for r in results[key].runs if r.get("pixel_error") is not None]
        bad = [r for r in runs if r["pixel_error"] > constant - LEARNED_MARGIN]
        worst = max(bad, key=lambda r: r["pixel_error"]) if bad else None
        found[f"learned:{key}"] = (not bad, f"pixel error of a constant prediction {constant:.4f}: " + (
            f"every one of the {len(runs)} networks at least {LEARNED_MARGIN} below it" if not bad else
            f"{len(bad)} of {len(runs)} networks did not learn (e.g. {worst['variant']} seed {worst['seed']}: "
            f"{worst['pixel_error']:.4f})"))
    hela = results.get("weighted_loss")
    if hela is not None:
        low = [r for r in hela.runs if r["variant"] == "w0 = 10" and r["SEG"] < FINDS_CELLS]
        found["finds_cells"] = (not low, f"SEG of w0 = 10 at least {FINDS_CELLS} with every seed" if not low else
                                "w0 = 10 below SEG " + f"{FINDS_CELLS}: " + ", ".join(f"seed {r['seed']}" for r in low))
    return found


def _paired(result: StudyResult, metric: str, baseline: str, variant: str) -> list[float]:
    unit = result.units[0]
    a, b = result.values(baseline, unit, metric), result.values(variant, unit, metric)
    return [b[s] - a[s] for s in sorted(set(a) & set(b))]


def control_of(claim: Claim, found: dict[str, tuple[bool, str]]) -> tuple[bool, str]:
    """The outcome of ``claim``'s control among :func:`controls`' (``learned`` is checked per study)."""
    key = f"learned:{claim.study}" if claim.control == "learned" else claim.control
    if key not in found:
        raise UnetlibError(f"claim {claim.key}: its control {key!r} was not checked (is its study run?)")
    return found[key]


def decide(claim: Claim, result: StudyResult, passed: tuple[bool, str]) -> dict:
    """The claim's row: both arms' means, the effect (variant - baseline, mean over paired seeds) with its 95 %
    interval, n, the control's outcome and the verdict (:func:`unetlib.stats.verdict`; "not testable at this
    budget" when the control failed)."""
    d = _paired(result, claim.metric, claim.baseline, claim.variant)
    if not d:
        raise UnetlibError(f"claim {claim.key}: no paired runs of {claim.variant!r} and {claim.baseline!r}")
    unit = result.units[0]
    a, b = result.values(claim.baseline, unit, claim.metric), result.values(claim.variant, unit, claim.metric)
    effect, low, high = t_interval(d)
    ok, why = passed
    word = verdict(low, high, claim.claimed, claim.practical) if ok else f"{NOT_TESTABLE}: {why}"
    return {"claim": claim.title, "section": claim.section, "metric": METRIC_NAMES.get(claim.metric, claim.metric),
            "comparison": f"{claim.variant} - {claim.baseline}", "paper's arm": float(np.mean(list(a.values()))),
            "other arm": float(np.mean(list(b.values()))), "effect": effect, "low": low, "high": high, "n": len(d),
            "practical size": claim.practical, "control": why if ok else "failed", "verdict": word}


def sentence(row: dict) -> str:
    """A verdict row as the sentence that ends its claim's section."""
    word = row["verdict"]
    if word.startswith(NOT_TESTABLE):
        return f"**{row['claim']}: {word}.**"
    interval = "" if math.isnan(row["low"]) else f" (95 % interval {row['low']:+.4g} to {row['high']:+.4g})"
    text = (f"**{row['claim']}: {word}.** {row['comparison']}: {row['metric']} {row['effect']:+.4g}{interval}, "
            f"{row['n']} seeds; the smallest difference that would matter: {row['practical size']:g}.")
    needed = seeds_needed(row) if word == UNDECIDED else None
    if needed is not None:
        text += (f" Not decidable at this budget: the seeds differ too much (sd of the paired difference "
                 f"{paired_sd(row):.2g}); about {needed} seeds would narrow the interval to ±{row['practical size']:g}.")
    return text


def paired_sd(row: dict) -> float:
    """The standard deviation of a row's paired differences, recovered from its t interval (NaN for n < 2)."""
    n = row["n"]
    if n < 2 or math.isnan(row["low"]):
        return math.nan
    return (row["high"] - row["low"]) / 2 / float(stats.t.ppf(0.975, n - 1)) * math.sqrt(n)


def seeds_needed(row: dict) -> int | None:
    """About how many seeds the row's spread would need for a 95 % interval of ± its practical size (normal
    approximation, at least the seeds it has); None without a spread."""
    sd = paired_sd(row)
    if math.isnan(sd):
        return None
    return max(row["n"], math.ceil((1.96 * sd / row["practical size"]) ** 2))


def throughput_row(large: dict, batch: dict) -> dict:
    """The large-tile claim as throughput: output pixels per second of training with one large tile per step
    against a batch of small tiles (each step's rate a sample; Welch's 95 % interval of the difference)."""
    def rates(m):
        return np.array([m["batch"] * output_size(m["tile"]) ** 2 / t for t in m["step_times"]])

    a, b = rates(large), rates(batch)
    diff = float(b.mean() - a.mean())
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    dof = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1)) if var_a + var_b > 0 else 1.0
    half = float(stats.t.ppf(0.975, dof) * math.sqrt(var_a + var_b))
    return {"claim": "Large tiles over a large batch (throughput)", "section": "3",
            "metric": METRIC_NAMES["output_pixels_per_second"],
            "comparison": f"batch of {batch['batch']} x {batch['tile']}² - 1 x {large['tile']}²",
            "paper's arm": float(a.mean()), "other arm": float(b.mean()), "effect": diff, "low": diff - half,
            "high": diff + half, "n": int(min(a.size, b.size)), "practical size": 0.05 * float(a.mean()),
            "control": f"peak memory {large['peak_memory_mib']:,.0f} MiB against {batch['peak_memory_mib']:,.0f} MiB",
            "verdict": verdict(diff - half, diff + half, -1, 0.05 * float(a.mean()))}


def undecided(rows: Sequence[dict]) -> bool:
    """Whether any verdict row still wants more seeds."""
    return any(r["verdict"] == UNDECIDED for r in rows)


# --------------------------------------------------------------------------- #
# Measurements: tile throughput, speed
# --------------------------------------------------------------------------- #
def tile_throughput(width: int, tile: int, batch: int, steps: int = 6, warmup: int = 2) -> dict:
    """One training configuration measured in a fresh process: seconds per step (median after ``warmup``),
    output pixels per second and the process's peak memory (MiB), with this machine's precision and threads."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_throughput, (width, tile, batch, steps, warmup, torch.get_num_threads()))


def _throughput(width: int, tile: int, batch: int, steps: int, warmup: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    device = pick_device("cpu")
    torch.manual_seed(0)
    model = to_channels_last(UNet(width=width), device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = output_size(tile)
    x = torch.rand(batch, 1, tile, tile).contiguous(memory_format=torch.channels_last)
    y, w = torch.randint(0, 2, (batch, out, out)), torch.ones(batch, out, out)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = weighted_cross_entropy(model(x), y, w)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"width": width, "tile": tile, "batch": batch, "seconds_per_step": seconds,
            "output_pixels_per_second": batch * out * out / seconds, "step_times": times,
            "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
            "times": times, "repeats": repeats}


def speed_row(measured: dict) -> dict:
    """The speed claim's row: supported or contradicted on a GPU (under 1 s or not); on a CPU not testable."""
    seconds = measured["seconds"]
    if measured["device"] == "cuda":
        word = SUPPORTED if seconds < 1.0 else "contradicted"
    else:
        word = f"{NOT_TESTABLE}: no GPU here (the claim is about one)"
    return {"claim": "Segmentation of a 512x512 image takes less than a second on a recent GPU",
            "section": "abstract", "metric": METRIC_NAMES["seconds"],
            "comparison": f"width {measured['width']}, {measured['size']}² image, {measured['device']}",
            "paper's arm": 1.0, "other arm": seconds, "effect": seconds - 1.0, "low": math.nan, "high": math.nan,
            "n": measured["repeats"], "practical size": math.nan, "control": "–", "verdict": word}


def border_band(shape: tuple[int, int], width: int = BORDER) -> np.ndarray:
    """True within ``width`` pixels of the border (:func:`unetlib.geometry.border_band`)."""
    return geometry.border_band(shape, width)
