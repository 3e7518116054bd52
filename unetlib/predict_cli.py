"""``unetlib predict CHECKPOINT IMAGE``: overlap-tile prediction of a file with a trained network.

The checkpoint's recipe sets the input scaling and the test-time averaging
(``--normalize`` and ``--tta`` override them); outputs are written atomically
and never over an input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from unetlib.errors import UnetlibError

__all__ = ["register_cli"]


def register_cli(subparsers) -> None:
    """Add ``unetlib predict CHECKPOINT IMAGE ...``."""
    from unetlib.geometry import TTA_MODES
    from unetlib.preprocess import NORMALIZATIONS

    parser = subparsers.add_parser(
        "predict",
        help="overlap-tile prediction of an image or TIFF stack",
        description="Seamless overlap-tile prediction (paper Fig. 2) of a 2-D TIFF/PNG image or a TIFF "
        "stack with a trained checkpoint; writes float32 probabilities and/or labels as TIFF.",
    )
    parser.add_argument("checkpoint", help="checkpoint written by `unetlib train`")
    parser.add_argument("image", help="2-D TIFF/PNG image or TIFF stack (S, H, W)")
    parser.add_argument("--probabilities", metavar="OUT.tif", help="write float32 softmax probabilities here")
    parser.add_argument("--labels", metavar="OUT.tif", help="write argmax labels (uint8/uint16) here")
    parser.add_argument("--instances", metavar="OUT.tif",
                        help="write cell instances (uint16): 4-connected components of P(cell) > the recipe's "
                             "threshold, components under its minimum size removed, as the experiments cut them")
    parser.add_argument("--class", dest="class_index", type=int, metavar="K",
                        help="write only P(class K) to --probabilities (e.g. 1 = P(cell) for the ISBI submission)")
    parser.add_argument("--tile", metavar="T or HxW",
                        help="input tile edge, 16k + 60 (default: the checkpoint's recipe, else automatic)")
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time averaging (default: the checkpoint's recipe)")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, help="input scaling (default: the checkpoint's recipe)")
    parser.add_argument("--bit-depth", type=int, metavar="B",
                        help="bits a uint16 image holds (e.g. 12 for a 12-bit camera): 'unit' scaling divides by "
                             "2**B - 1 instead of 65,535; needed when the values fit in 14 bits or fewer")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--batch-size", type=int, help="tiles per forward pass (default: automatic)")
    parser.add_argument("--no-amp", action="store_true", help="compute in fp32")
    parser.set_defaults(func=_cli_predict)


def _cli_predict(args) -> int:
    from unetlib.atomic import write_tiff
    from unetlib.inference import Tiling, check_image, label_dtype, softmax
    from unetlib.segment import Segmenter
    from unetlib.userfiles import check_output_paths, is_image_file, read_image

    # every option and path is checked before the checkpoint and the image are read
    _check_outputs(args)
    check_output_paths({"image": args.image, "checkpoint": args.checkpoint},
                       {"--probabilities": args.probabilities, "--labels": args.labels,
                        "--instances": args.instances})
    _check_suffixes(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise UnetlibError(f"--batch-size must be at least 1, got {args.batch_size}")
    tile = _parse_tile(args.tile)
    _check_device(args.device)
    if is_image_file(args.checkpoint):  # `unetlib predict IMAGE.tif CHECKPOINT`: not a corrupt checkpoint to delete
        raise UnetlibError(f"{args.checkpoint} is an image, not a checkpoint: the checkpoint comes first "
                           f"(unetlib predict CHECKPOINT IMAGE ...)")
    segmenter = Segmenter.load(args.checkpoint)
    model, settings = segmenter.model, segmenter.settings()
    if segmenter.recipe is None and args.normalize is None:
        print(f"note: {args.checkpoint} carries no recipe; scaling inputs as 'unit' (uint8 / 255)")
    normalize = args.normalize or settings["normalize"]
    tta = args.tta or settings["tta"]
    tile = tile if tile is not None else settings["predict_tile"]
    _check_class(args.class_index, model.num_classes, args.checkpoint)
    image = read_image(args.image, model.in_channels)
    try:
        check_image(image, model.in_channels)  # the prediction's own check, here before any work
    except UnetlibError as exc:
        raise UnetlibError(f"{args.image}: {exc}") from None
    _check_scaling_range(image, args.image, normalize)
    bit_depth = _check_bit_depth(image, args.image, normalize, args.bit_depth)
    resampled = f", resampled by {settings['resample']:g}" if settings["resample"] != 1 else ""
    bits = f" of {bit_depth}-bit values (/ {2**bit_depth - 1:,})" if bit_depth else ""
    print(f"{args.image}: {image.shape} {image.dtype}, read as {'a stack' if image.ndim == 3 else 'one image'}; "
          f"input scaling {normalize!r}{bits}{resampled}, test-time averaging {tta!r}")
    tiling = Tiling(tile=tile, batch_size=args.batch_size, device=args.device,  # a bar on a terminal only:
                    amp=not args.no_amp, progress=sys.stderr.isatty())  # logs keep stderr for the error line
    try:
        logits = segmenter.logits(image, tta=tta, normalize=normalize, tiling=tiling, bit_depth=bit_depth)
    except UnetlibError as exc:  # name the files the message is about
        raise UnetlibError(f"predicting {args.image} with {args.checkpoint}: {exc}") from None
    class_axis = logits.ndim - 3
    if args.probabilities:
        probabilities = softmax(logits, axis=class_axis)
        if args.class_index is not None:
            probabilities = np.take(probabilities, args.class_index, axis=class_axis)
        _report(write_tiff(args.probabilities, probabilities), probabilities)
    if args.labels:
        labels = logits.argmax(axis=class_axis).astype(label_dtype(model.num_classes))
        _report(write_tiff(args.labels, labels), labels)
    if args.instances:
        if model.num_classes != 2:
            raise UnetlibError(f"--instances needs a two-class (background, cell) network; {args.checkpoint} has "
                               f"{model.num_classes} classes")
        split = settings["split_threshold"]
        print(f"instances: components of P(cell) > {settings['threshold']}, at least {settings['min_size']} px"
              + (f", split between cores of P(cell) > {split}" if split is not None else ""))
        instances = segmenter.instances(np.take(softmax(logits, axis=class_axis), 1, axis=class_axis))
        _report(write_tiff(args.instances, instances), instances)
    return 0


#: Largest magnitude a network input may have after scaling: networks are trained on values of
#: order 1, and far larger ones saturate the softmax into meaningless 0/1 maps (or overflow to NaN).
MAX_SCALED_INPUT = 1e6
#: Largest float value the 'unit' scaling accepts: it passes floats as they are, and its networks saw [0, 1].
UNIT_FLOAT_LIMIT = 2.0


def _check_scaling_range(image: np.ndarray, path: str, normalize: str) -> None:
    """Refuse, naming the file, values the input scaling would pass on ruined: huge, or far outside [0, 1]
    for 'unit' (the image's axes and pixels are checked already)."""
    from unetlib.preprocess import row_blocks

    if normalize == "unit" and image.dtype.kind in "iu" and image.dtype.itemsize > 2:
        peak = int(image.max()) if image.size else 0
        raise UnetlibError(
            f"image {path} is {image.dtype}: the scaling 'unit' divides by its maximum ({np.iinfo(image.dtype).max}), "
            f"which makes its values (up to {peak}) nearly 0: convert it to uint8 or uint16, or pass --normalize "
            "zscore or minmax")
    if image.dtype.kind != "f" and not (normalize == "none" and image.dtype.kind in "iu"):
        return  # integers are scaled by their dtype's maximum (or per image): always in range
    peak = 0.0
    for block in row_blocks(image):
        peak = max(peak, float(np.abs(block.astype(np.float64)).max()))
    if normalize == "unit" and image.dtype.kind == "f" and peak > UNIT_FLOAT_LIMIT:
        raise UnetlibError(
            f"image {path} holds float values up to {peak:.4g}, but the scaling 'unit' passes floats unchanged "
            "and the network was trained on values in [0, 1]: divide the image by 255 (8-bit values) or its "
            "maximum, or pass --normalize zscore or minmax")
    if normalize in ("unit", "none") and peak > MAX_SCALED_INPUT:
        raise UnetlibError(
            f"image {path} holds values up to {peak:.3g}, which the input scaling {normalize!r} passes to the "
            f"network unchanged (limit {MAX_SCALED_INPUT:.0e}; networks are trained on values of order 1): "
            "pass --normalize zscore or minmax, or rescale the image"
        )


def _check_bit_depth(image: np.ndarray, path: str, normalize: str, bit_depth: int | None) -> int | None:
    """The bit depth 'unit' scales by; a uint16 image whose values fit in 14 bits or fewer needs one.

    Under 'unit', an image is divided by its type's maximum, so a 12-bit camera's
    uint16 image (values up to 4,095) would reach the network as values up to
    0.06: a nearly black image it answers anyway. Refused, naming ``--bit-depth``.
    """
    from unetlib.preprocess import bits_held, check_bit_depth

    if bit_depth is not None:
        if normalize != "unit":
            raise UnetlibError(f"--bit-depth sets the 'unit' scaling; the scaling here is {normalize!r}, "
                               "which does not use it: drop --bit-depth")
        try:
            return check_bit_depth(image, bit_depth, "--bit-depth")
        except UnetlibError as exc:
            raise UnetlibError(f"image {path}: {exc}") from None
    if normalize == "unit" and image.dtype == np.uint16:
        peak = int(image.max())
        held = bits_held(peak)
        if held < 16:
            raise UnetlibError(
                f"image {path} is uint16 with values up to {peak:,}, which fit in {held} bits: the scaling 'unit' "
                f"divides by 65,535, so the network would see values up to {peak / 65535:.3f}, a nearly black image. "
                f"Pass --bit-depth {held} to divide by {2**held - 1:,} (the bits a {held}-bit camera writes), or "
                "--bit-depth 16 if it is a dark 16-bit image")
    return None


def _report(path: Path, array: np.ndarray) -> None:
    print(f"wrote {path} {array.dtype} {array.shape}")


def _check_outputs(args) -> None:
    if not (args.probabilities or args.labels or args.instances):
        raise UnetlibError("nothing to write: give --probabilities, --labels and/or --instances OUT.tif")
    if args.class_index is not None and not args.probabilities:
        raise UnetlibError("--class selects a probability map: also give --probabilities OUT.tif")


def _check_suffixes(args) -> None:
    for option, value in (("--probabilities", args.probabilities), ("--labels", args.labels),
                          ("--instances", args.instances)):
        if value and Path(value).suffix.lower() not in (".tif", ".tiff"):
            raise UnetlibError(f"{option} {value}: the outputs are written as TIFF; give a name ending in .tif")


def _check_device(device: str | None) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UnetlibError("--device cuda: PyTorch sees no CUDA GPU on this machine; use --device cpu "
                           "(or leave --device out to use a GPU only when there is one)")


def _check_class(class_index: int | None, num_classes: int, checkpoint: str) -> None:
    if class_index is not None and not 0 <= class_index < num_classes:
        raise UnetlibError(f"--class {class_index} does not exist: {checkpoint} has classes 0..{num_classes - 1}")


def _parse_tile(text: str | None):
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise UnetlibError(f"--tile {text!r} is not a number or HxW (e.g. 572 or 444x892)") from None
    if len(parts) not in (1, 2):
        raise UnetlibError(f"--tile {text!r} is not a number or HxW (e.g. 572 or 444x892)")
    from unetlib.model import check_input_size

    for part in parts:
        check_input_size(part, "--tile" if len(parts) == 1 else f"--tile {text}: edge")
    return parts[0] if len(parts) == 1 else tuple(parts)
