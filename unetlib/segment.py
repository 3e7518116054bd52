"""A trained network with its recipe: segment any image exactly as the experiments did.

A checkpoint written by the kit carries the :class:`~unetlib.recipe.Recipe` it
was trained with, including the post-processing tuned on its training data.
:class:`Segmenter` replays that recipe on new images, and is the only place
that does (the experiment protocols, ``unetlib predict`` and a user's notebook
all call it)::

    seg = Segmenter.load("reports/cpu/checkpoints/DIC-C2DH-HeLa_train01/last.pt")
    p_cell, cells = seg.segment(image)           # P(cell) and instance labels, full size

Per image: scale the pixels (``recipe.normalize``) -> resample
(``recipe.resample``) -> overlap-tile prediction with the recipe's test-time
averaging (:func:`unetlib.inference.predict`) -> logits resampled back to the
image's size -> softmax -> instances (:mod:`unetlib.postprocess`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetlib.checkpoint import load_checkpoint, load_model
from unetlib.inference import Tiling, predict, softmax
from unetlib.postprocess import cell_instances
from unetlib.preprocess import normalize_image, resample, resampled_shape
from unetlib.recipe import Recipe

__all__ = ["Segmenter"]


@dataclass
class Segmenter:
    """A network and the recipe it was trained with (None: the release's defaults, see :meth:`settings`)."""

    model: object
    recipe: Recipe | None = None

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | None = "cpu") -> Segmenter:
        """The network of a checkpoint and its stored recipe (the weights' digest is checked)."""
        payload = load_checkpoint(checkpoint)
        model = load_model(checkpoint, device=device, payload=payload)
        stored = (payload.get("metadata") or {}).get("recipe")
        return cls(model, Recipe.from_dict(stored) if stored is not None else None)

    def settings(self) -> dict:
        """Scaling, resampling, averaging, tile and post-processing used (recipe, else the release's defaults)."""
        r = self.recipe
        if r is None:
            return {"normalize": "unit", "resample": 1.0, "tta": "none", "predict_tile": None,
                    "threshold": 0.5, "min_size": 0, "split_threshold": None}
        return {"normalize": r.normalize, "resample": r.resample, "tta": r.tta, "predict_tile": r.predict_tile,
                "threshold": r.threshold, "min_size": r.min_size, "split_threshold": r.split_threshold}

    def default_tiling(self) -> Tiling:
        """The recipe's inference tile, device, precision and padding beyond the image (as the network was
        trained: ``train.augment.padding``), without a progress bar."""
        train = self.recipe.train if self.recipe is not None else None
        return Tiling(tile=self.settings()["predict_tile"], device=train.device if train else None,
                      amp=train.amp if train else True, progress=False,
                      padding=train.augment.padding if train else "mirror")

    def logits(self, image, *, tta: str | None = None, normalize: str | None = None,
               tiling: Tiling | None = None, bit_depth: int | None = None) -> np.ndarray:
        """Logits ``(K, H, W)`` (a stack: ``(S, K, H, W)``) at the image's own size.

        ``tta`` and ``normalize`` override the recipe's; ``tiling`` its tile,
        device and precision; ``bit_depth`` is the bits an integer image holds
        (see :func:`unetlib.preprocess.normalizer`).
        """
        settings = self.settings()
        tta = settings["tta"] if tta is None else tta
        normalize = settings["normalize"] if normalize is None else normalize
        tiling = self.default_tiling() if tiling is None else tiling
        factor = float(settings["resample"])
        if factor == 1.0:
            return predict(self.model, image, tta=tta, normalize=normalize, output="logits", tiling=tiling,
                           bit_depth=bit_depth)
        image = np.asarray(image)
        single = image.ndim == (2 if int(getattr(self.model, "in_channels", 1)) == 1 else 3)
        planes = [image] if single else list(image)
        out = []
        for plane in planes:
            scaled = normalize_image(plane, normalize, bit_depth)
            small = resample(scaled, resampled_shape(scaled.shape, factor))
            logits = predict(self.model, small, tta=tta, normalize="none", output="logits", tiling=tiling)
            out.append(resample(logits, plane.shape[-2:]))
        return out[0] if single else np.stack(out)

    def probabilities(self, image, **options) -> np.ndarray:
        """Softmax probabilities ``(K, H, W)`` (a stack: ``(S, K, H, W)``); options as :meth:`logits`."""
        logits = self.logits(image, **options)
        return softmax(logits, axis=logits.ndim - 3)

    def p_cell(self, image, **options) -> np.ndarray:
        """P(cell) (class 1), ``(H, W)`` or ``(S, H, W)``; options as :meth:`logits`."""
        prob = self.probabilities(image, **options)
        return np.take(prob, 1, axis=prob.ndim - 3)

    def instances(self, p_cell: np.ndarray, threshold: float | None = None, min_size: int | None = None) -> np.ndarray:
        """The recipe's post-processing of P(cell), slice by slice for a stack (uint16 labels)."""
        settings = self.settings()
        threshold = settings["threshold"] if threshold is None else threshold
        min_size = settings["min_size"] if min_size is None else min_size
        split = settings["split_threshold"]
        p_cell = np.asarray(p_cell)
        if p_cell.ndim == 2:
            return cell_instances(p_cell, threshold, min_size, split)
        return np.stack([cell_instances(plane, threshold, min_size, split) for plane in p_cell])

    def segment(self, image, **options) -> tuple[np.ndarray, np.ndarray]:
        """``(P(cell), instances)`` of an image or stack, as the experiments computed them."""
        p_cell = self.p_cell(image, **options)
        return p_cell, self.instances(p_cell)

    def with_recipe(self, **changes) -> Segmenter:
        """The same network with recipe fields changed (e.g. the tuned threshold)."""
        return dataclasses.replace(self, recipe=self.recipe.replace(**changes))
