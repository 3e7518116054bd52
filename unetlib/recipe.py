"""The recipe: one object that says how a network was made, from pixels to instances.

A :class:`Recipe` holds everything that defines one experiment's network:
the dataset, the input scaling, the network and its training
(:class:`~unetlib.train.TrainConfig`, with the augmentation), the Eq. 2 weight
map, the test-time averaging and the post-processing into instances. It is

- saved in every checkpoint (so ``unetlib predict`` scales inputs and averages
  exactly as the network was trained and evaluated),
- recorded with every run in every result file,
- and the single source of the named profiles: :func:`preset` gives the
  recipe of a dataset under ``smoke``, ``cpu``, ``gpu`` or ``paper``; the
  notebooks, ``unetlib train DATASET`` and the fan-out all start from it.

Every field where the paper is silent is a choice; :data:`WHY` says why it
was made, and the notebooks print those reasons next to the cells that use
them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from unetlib import profiles
from unetlib.augment import AugmentParams
from unetlib.data import CTC_DATASETS, DATASETS
from unetlib.errors import UnetlibError
from unetlib.geometry import TTA_MODES
from unetlib.model import check_input_size
from unetlib.preprocess import NORMALIZATIONS
from unetlib.train import NETWORK_FIELDS as TRAIN_NETWORK_FIELDS
from unetlib.train import TrainConfig
from unetlib.values import check_bool, check_choice, check_integer, check_real, differing, flatten
from unetlib.weights import check_class_weights

__all__ = ["Recipe", "preset", "PROFILES", "WHY", "NETWORK_FIELDS"]

#: The named profiles (presets) of every experiment, one file each (:mod:`unetlib.profiles`).
PROFILES = profiles.NAMES




#: What identifies a trained network: a checkpoint is resumed or reused only when these agree. The data side
#: here, and the training config's own (:data:`unetlib.train.NETWORK_FIELDS`). The others (profile, tta,
#: predict_tile, threshold, min_size, split_threshold, tune_postprocessing, tune_split; train.device, train.amp,
#: train.checkpoint_every) say how a trained network is applied, or where and how it ran.
NETWORK_FIELDS = ("dataset", "normalize", "resample", "train_images", "w0", "sigma", "class_weights",
                  "ignore_unannotated", "touching_copies", *(f"train.{name}" for name in TRAIN_NETWORK_FIELDS))


@dataclass(frozen=True)
class Recipe:
    """How one network is trained, applied and turned into a segmentation.

    Attributes
    ----------
    dataset : str
        ``"isbi2012"``, ``"PhC-C2DH-U373"`` or ``"DIC-C2DH-HeLa"``.
    profile : str
        The preset it came from (``"custom"`` when built by hand).
    normalize : str
        Input scaling, see :mod:`unetlib.preprocess` (training and inference).
    resample : float
        Images (and masks) are resampled by this factor before the network sees
        them, in training and inference; predictions are resampled back to the
        image's size (1: as recorded; 0.5: half resolution, twice the context).
    train_images : int
        Train on this many of the unit's training images, evenly spaced (ISBI
        sections, annotated CTC frames); 0: all of them. For data-efficiency
        experiments; the test images are unchanged.
    train : TrainConfig
        Network width and variant, optimiser, schedule, tiles, iterations,
        seed and augmentation.
    w0, sigma : float
        Eq. 2 border weight and width (paper: 10 and 5 px).
    class_weights : "balanced", None or (float, float)
        ``w_c`` of Eq. 2 (see :func:`unetlib.weights.class_weight_map`).
    ignore_unannotated : bool
        Cell Tracking Challenge only: where a tracking marker shows a cell that
        the segmentation annotation leaves out, the loss weight is 0 around it
        (such cells are not background).
    tta : {"none", "flips", "d4"}
        Test-time averaging of the logits.
    predict_tile : int or None
        Inference tile edge (16 k + 60); None chooses automatically.
    threshold : float
        Instances are the 4-connected components of ``P(cell) > threshold``.
    min_size : int
        Components smaller than this many pixels are removed.
    split_threshold : float or None
        None: instances are the components; a value above ``threshold``: each
        component is split between its cores ``P(cell) > split_threshold``
        along the valleys of P(cell) (see :mod:`unetlib.postprocess`).
    tune_postprocessing : bool
        Cell Tracking Challenge only: choose ``threshold`` and ``min_size``
        from a small grid by SEG on the *training* sequence (the values above
        are then unused); the test sequence is never looked at.
    tune_split : bool
        With ``tune_postprocessing``, also choose ``split_threshold`` from
        :data:`unetlib.postprocess.TUNE_SPLITS` (None among them).
    touching_copies : int
        Cell Tracking Challenge only (not in the paper): each annotated training
        frame gets this many copies (0 to 10) in which three cells are pasted
        beside others, 1 to 3 pixel steps apart at the frame's own resolution
        (:func:`unetlib.augment.paste_touching`); 0: none.
    """

    dataset: str
    profile: str = "custom"
    normalize: str = "unit"
    resample: float = 1.0
    train_images: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: Any = "balanced"
    ignore_unannotated: bool = False
    tta: str = "flips"
    predict_tile: int | None = None
    threshold: float = 0.5
    min_size: int = 0
    split_threshold: float | None = None
    tune_postprocessing: bool = False
    tune_split: bool = False
    touching_copies: int = 0

    def __post_init__(self) -> None:
        check_choice("Recipe.dataset", self.dataset, DATASETS)
        if not isinstance(self.profile, str):
            raise UnetlibError(f"Recipe.profile must be a name, got {self.profile!r}")
        check_choice("Recipe.normalize", self.normalize, NORMALIZATIONS)
        check_choice("Recipe.tta", self.tta, TTA_MODES)
        if not isinstance(self.train, TrainConfig):
            raise UnetlibError("Recipe.train must be a unetlib.train.TrainConfig")
        check_real("Recipe.w0", self.w0, 0)
        check_real("Recipe.sigma", self.sigma, 0, low_open=True)
        check_real("Recipe.threshold", self.threshold, 0, 1, high_open=True)
        check_real("Recipe.resample", self.resample, 0.1, 4)
        check_integer("Recipe.train_images", self.train_images, 0)
        check_integer("Recipe.min_size", self.min_size, 0)
        check_integer("Recipe.touching_copies", self.touching_copies, 0, 10)
        check_bool("Recipe.ignore_unannotated", self.ignore_unannotated)
        check_bool("Recipe.tune_postprocessing", self.tune_postprocessing)
        check_bool("Recipe.tune_split", self.tune_split)
        if self.split_threshold is not None:
            check_real("Recipe.split_threshold", self.split_threshold, 0, 1, high_open=True)
        if self.predict_tile is not None:
            check_input_size(self.predict_tile, "Recipe.predict_tile")
        check_class_weights(self.class_weights)
        ctc_only = [name for name in ("ignore_unannotated", "tune_postprocessing", "touching_copies")
                    if getattr(self, name)]
        if ctc_only and self.dataset not in CTC_DATASETS:
            raise UnetlibError(f"Recipe.{ctc_only[0]} applies to the Cell Tracking Challenge datasets only "
                               f"({', '.join(CTC_DATASETS)}), not {self.dataset}")

    # ------------------------------------------------------------------ #
    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes``; ``"train.lr"``-style names (or a ``train={...}`` dict) reach into
        the training config and ``"train.augment.rotation"`` into its augmentation. Setting
        ``threshold`` or ``min_size`` by hand turns ``tune_postprocessing`` off (unless it is set too)."""
        top, nested = {}, {}
        for name, value in changes.items():
            head, _, rest = name.partition(".")
            if head == "train" and isinstance(value, dict) and not rest:
                nested.update(value)
            elif rest:
                if head != "train":
                    raise UnetlibError(f"unknown recipe field {name!r}: only train.* has sub-fields")
                nested[rest] = value
            else:
                top[name] = value
        _check_names(top, {f.name for f in dataclasses.fields(self)}, "recipe")
        if ({"threshold", "min_size", "split_threshold"} & set(top)) and "tune_postprocessing" not in top:
            top["tune_postprocessing"] = False  # a value given by hand is used, not tuned away
        if nested:
            top["train"] = _replace_train(self.train, nested)
        return dataclasses.replace(self, **top)

    @property
    def needs_markers(self) -> bool:
        """Whether training reads the tracking markers: to ignore unannotated cells, or to paste none onto them."""
        return self.ignore_unannotated or self.touching_copies > 0

    def seeded(self, seed: int) -> Recipe:
        """The same recipe with another training seed (each fold or direction has its own)."""
        return self.replace(**{"train.seed": int(seed)})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe data (checkpoints and result files)."""
        data = dataclasses.asdict(self)
        if isinstance(data["class_weights"], tuple):
            data["class_weights"] = list(data["class_weights"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The inverse of :meth:`to_dict`; unknown or malformed fields are one-line errors."""
        if not isinstance(data, dict):
            raise UnetlibError(f"a recipe must be a mapping, got {type(data).__name__}")
        data = dict(data)
        _check_names(data, {f.name for f in dataclasses.fields(cls)}, "recipe")
        train = dict(data.pop("train", {}) or {})
        augment = dict(train.pop("augment", {}) or {})
        _check_names(train, {f.name for f in dataclasses.fields(TrainConfig)}, "recipe train")
        _check_names(augment, {f.name for f in dataclasses.fields(AugmentParams)}, "recipe augment")
        if isinstance(data.get("class_weights"), list):
            data["class_weights"] = tuple(data["class_weights"])
        config = TrainConfig.from_dict({**train, "augment": augment})
        try:
            return cls(**data, train=config)
        except TypeError as exc:
            raise UnetlibError(f"malformed recipe: {exc}") from None

    def differs_from(self, other: Recipe, fields: Sequence[str] | None = NETWORK_FIELDS,
                     ignore: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
        """Dotted field name -> (``other``'s value, this one's) for every field among ``fields`` (default
        :data:`NETWORK_FIELDS`: empty when both make the same network; None: every field) less ``ignore``
        that differs. The kit's one answer to "is this the same network?": resuming a checkpoint (in the
        experiments and ``unetlib train``) and a study's reuse of runs and networks all ask it."""
        return differing(other.to_dict(), self.to_dict(), fields, ignore)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def choices(self) -> list[tuple[str, Any, str]]:
        """``(name, value, why)`` for every choice with a reason in :data:`WHY` (for the notebooks)."""
        flat = flatten(self.to_dict())
        rows = []
        for name, why in WHY.items():
            if name in flat:
                rows.append((name, flat[name], why.get(self.dataset, why.get("*", "")) if isinstance(why, dict) else why))
        return rows




def _check_names(given: dict, known: set[str], what: str) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise UnetlibError(f"unknown {what} field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _replace_train(config: TrainConfig, changes: dict[str, Any]) -> TrainConfig:
    augment = {k.partition(".")[2]: v for k, v in changes.items() if k.startswith("augment.")}
    plain = {k: v for k, v in changes.items() if not k.startswith("augment.")}
    if isinstance(plain.get("augment"), dict):
        augment.update(plain.pop("augment"))
    _check_names(plain, {f.name for f in dataclasses.fields(TrainConfig)}, "train")
    if augment:
        _check_names(augment, {f.name for f in dataclasses.fields(AugmentParams)}, "augment")
        plain["augment"] = dataclasses.replace(config.augment, **augment)
    return dataclasses.replace(config, **plain)


# --------------------------------------------------------------------------- #
# The presets (profiles)
# --------------------------------------------------------------------------- #
def preset(dataset: str, profile: str) -> Recipe:
    """The recipe of ``dataset`` under ``profile``: the dataset's own choices, then the profile's
    (:mod:`unetlib.profiles`, one file per profile)."""
    if dataset not in DATASETS:
        raise UnetlibError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    recipe = Recipe(dataset=dataset, profile=profile)
    for changes in profiles.load(profile).recipe_layers(dataset):
        recipe = recipe.replace(**changes)
    return recipe


_LR = "peak learning rate: Adam's usual 1e-3 at width 16 (5e-4 at width 64); SGD 1e-3 with momentum 0.99 on the " \
      "paper profile."
_STEPS = "steps per network; the cpu profile's are what fits in an hour on two cores for all networks."
_SEEDS = "decided over seeds against its alternative: the numbers are in reports/cpu-seeds and docs/reading-the-numbers.md"
#: Why each choice was made (per dataset where it differs); shown by the notebooks beside the cells using them. The
#: reasons live here; the numbers that decided them live in the reports they name (they change as runs are added).
WHY: dict[str, Any] = {
    "normalize": {
        "isbi2012": "uint8 / 255, as the 2015 release scales its inputs.",
        "*": "per-image standardisation: the release scales by 1/255, but these images are low-contrast "
             "(DIC-HeLa: mean 119, std 10 of 255), which a short schedule does not learn from.",
    },
    "resample": {
        "DIC-C2DH-HeLa": "half resolution on the cpu and gpu profiles (0.5; the paper profile keeps 1): a "
                         "valid-convolution U-Net of depth 5 sees about 185 px around each output pixel, and "
                         "sequence 02's flat, spread cells are wider than that; at half resolution the same "
                         f"network sees twice the context. {_SEEDS} (before zoom: reports/cpu-seeds/earlier).",
        "*": "1: the images as recorded.",
    },
    "train.clip_grad": {
        "DIC-C2DH-HeLa": "the gradient's norm is clipped to 1 (about its median): rare tiles give gradients "
                         "100-300 times the usual, which inflate Adam's second-moment estimate and stall the "
                         "run for thousands of steps (measured over seeds before zoom: reports/cpu-seeds/earlier).",
        "*": "no clipping (0).",
    },
    "train_images": "0: every training image of the unit (fold or sequence); a number n trains on n of them, "
                    "evenly spaced (the few-images regime of appendix 05_claims).",
    "train.optimizer": "Adam on the smoke, cpu and gpu profiles: at a few thousand steps SGD with momentum 0.99 "
                       "and one tile per step learns slowly or collapses (appendix 04_training_diagnosis); the "
                       "paper profile keeps the paper's SGD with momentum 0.99.",
    "train.lr": {
        "isbi2012": f"{_LR} Twice the rate was no better on ISBI and less steady; {_SEEDS}.",
        "*": _LR,
    },
    "train.dropout": f"0.5 at the end of the contracting path, as in the paper; without it ISBI was no better at the "
                     f"cpu budget ({_SEEDS}; the claim itself: appendix 05_claims).",
    "train.schedule": "a linear warm-up (train.warmup steps), then poly decay (1 - i/n)^0.9: a short run ends with "
                      "small steps; the paper profile keeps a constant rate.",
    "train.width": "channels of the first level: 64 in the paper; 16 on two CPU cores (1/16 of the FLOPs; what width "
                   "buys against steps: appendix 07_budget).",
    "train.tile": "training input tile edge (16k + 60): 572 in the paper; 508 on the CPU, where a 508² tile gives "
                  "more output pixels per second than smaller ones (valid convolutions waste the border; "
                  "docs/performance.md).",
    "train.iterations": {
        "isbi2012": f"{_STEPS} More steps lower every ISBI error (appendix 07_budget draws how far), but double "
                    "ISBI's share of the run; the cpu profile keeps 2,500.",
        "*": _STEPS,
    },
    "train.augment.brightness": {
        "isbi2012": "grey-value variation (brightness, contrast, gamma) within each tile's value range: EM "
                    "sections differ in brightness and are only scaled by 1/255.",
        "*": "no grey-value variation: in a standardised phase-contrast or DIC tile the value range spans about "
             "18 standard deviations (bright halos), so 'brightness +-0.1 of the range' shifts a tile by up to "
             "1.8 sigma, more than a cell differs from the background; per-image standardisation removes global "
             "changes anyway (appendix 04, part B).",
    },
    "train.augment.scale": {
        "DIC-C2DH-HeLa": "zoom by up to 1.25 either way on the cpu profile (0.25; not in the paper): sequence 02 has "
                         f"cells larger than any annotated in 01. {_SEEDS}. The gpu and paper profiles keep none "
                         "(not measured there).",
        "*": "no zoom (the paper names none).",
    },
    "train.augment.padding": "mirror: beyond the image a tile holds its mirror image, in training and in overlap-tile "
                             "inference (Fig. 2); zero padding only in the claims' comparison (appendix 05).",
    "class_weights": {
        "isbi2012": "w_c of Eq. 2: 'balanced' = inverse class frequency with mean 1 (membranes are 22 % of the "
                    "pixels and weigh 2.3, cells 0.64).",
        "DIC-C2DH-HeLa": "w_c of Eq. 2: 'balanced' = inverse class frequency with mean 1 (cells are 40-50 % of "
                         "the pixels, so both classes weigh about 1).",
        "PhC-C2DH-U373": "w_c of Eq. 2 left at 1 (None): cells are 5-8 % of the pixels, so 'balanced' weighs a "
                         "cell pixel 11 to 19 times a background pixel and the predicted cells bloat into the "
                         "bright halos in a 500-step run (appendix 04, part D); at the full cpu schedule the two do "
                         f"not differ beyond the seed spread ({_SEEDS}). The Eq. 2 border term is kept.",
    },
    "ignore_unannotated": "cells that have a tracking marker but no segmentation mask (e.g. 15 of 18 cells of "
                          "HeLa 01 frame 67) get loss weight 0 around them instead of being taught as background.",
    "tta": {
        "isbi2012": "the paper averaged its EM submission over '7 rotated versions' plus the identity: d4.",
        "DIC-C2DH-HeLa": "the 8 symmetries (d4) on the cpu profile, the release's 4 flips on the others: d4 "
                         f"scored better in 02->01 with every seed and steadied 01->02 ({_SEEDS}); about 15 s more "
                         "inference per network.",
        "*": "the release's 4 flips, averaged as logits.",
    },
    "touching_copies": f"0: the annotated frames only (the paper adds no frames); pasted neighbours did not help on "
                       f"PhC-U373 ({_SEEDS}).",
    "tune_postprocessing": "threshold and minimum component size chosen by SEG on the training sequence "
                           "(never on the test sequence) from a small grid.",
    "threshold": "instances are the 4-connected components of P(cell) > threshold (unless tuned).",
    "min_size": "smaller predicted components are removed as debris (unless tuned).",
    "tune_split": {
        "DIC-C2DH-HeLa": "tuning may also split a component between its cores of high P(cell) along the valleys "
                         "of P(cell) (a marker watershed; the paper names no instance post-processing): touching "
                         f"HeLa cells whose border the network only lowered came out merged ({_SEEDS}).",
        "*": "components only: on PhC-U373 tuning on the training sequence did not choose to split "
             f"({_SEEDS}), so the simpler rule stays.",
    },
}
