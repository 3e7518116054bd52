"""Bad inputs and faults, command by command, through the real command line.

Every case runs ``unetlib.cli.main([...])`` in-process (the signal cases and a
few entry-point checks run ``python -m unetlib`` in a subprocess) and asserts
what the issue "safe with untrusted files and faults" asks of every command:

- a non-zero exit code (2 for bad input or a bad file, 130 / 143 for SIGINT / SIGTERM);
- exactly one non-empty line on stderr, without a traceback, naming the
  offending file or value (and, through its wording, the fix); where training
  steps ran before the fault (full disk, signals), the progress lines come
  first and the message is the last line;
- nothing damaged: every file below the test's folder (inputs, a previous
  good output, a previous checkpoint) is byte-identical afterwards, and no
  output or temporary file was added.

Single cases already covered elsewhere (tests/test_tiling.py, test_train.py,
test_fetch.py, test_data.py, test_metrics_*.py) are not repeated here; the
tables below are the battery of the issue, grouped by class:

1. checkpoints   2. images for predict   3. outputs   4. values by range
5. evaluate      6. environment          7. signals
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from unetlib.checkpoint import load_checkpoint, save_checkpoint
from unetlib.cli import main
from unetlib.errors import UnetlibError
from unetlib.model import UNet


# --------------------------------------------------------------------------- #
# Helpers: run the CLI, snapshot a folder, check the one-line error
# --------------------------------------------------------------------------- #
def cli(capsys, argv) -> tuple[int, str, str]:
    """``unetlib ARGV`` in-process: (exit code, stdout, stderr); argparse's SystemExit is an exit code.

    Python warnings the command emits are added to stderr as ``python -m unetlib`` would print them
    (pytest would otherwise collect them silently); the warnings Python hides by default stay hidden.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=hidden)
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    captured = capsys.readouterr()
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return code, captured.out, captured.err + shown


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry below ``folder``: file bytes, link targets, folders (and their permissions)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir", path.stat().st_mode & 0o777)
        elif os.access(path, os.R_OK):
            state[rel] = ("file", path.read_bytes())
        else:  # a chmod 000 case (not as root): size and modification time
            info = path.stat()
            state[rel] = ("unreadable file", info.st_size, info.st_mtime_ns)
    return state


def assert_unchanged(before: dict, after: dict) -> None:
    added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    assert not added and not removed, f"added {added}, removed {removed}"
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"changed: {changed}"


def error_line(err: str, prefix: str = "unetlib") -> str:
    """The single stderr line of a failed command (no traceback, no second line)."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.strip() and line.startswith(prefix), line
    return line


def refused(capsys, folder: Path, argv, names=(), code: int = 2) -> str:
    """Run ``argv``; assert exit ``code``, one stderr line naming ``names``, ``folder`` untouched."""
    before = snapshot(folder)
    got, _, err = cli(capsys, argv)
    line = error_line(err)
    assert got == code, f"exit {got}: {line}"
    assert "error" in line, line
    for name in names:
        assert str(name) in line, f"{name!r} not named in: {line}"
    assert_unchanged(before, snapshot(folder))
    return line


class Kit:
    """A tiny trained-looking setup in ``root``: a width-2 checkpoint and a 20 x 20 uint8 image."""

    def __init__(self, root: Path) -> None:
        self.root = root
        torch.manual_seed(0)
        self.checkpoint = save_checkpoint(root / "net.pt", UNet(width=2))
        self.image = root / "in.tif"
        tifffile.imwrite(self.image, np.arange(400, dtype=np.uint8).reshape(20, 20))
        self.out = root / "out.tif"

    def file(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    def tiff(self, name: str, array: np.ndarray, **kwargs) -> Path:
        path = self.root / name
        tifffile.imwrite(path, array, **kwargs)
        return path

    def payload(self, **changes) -> dict:
        payload = load_checkpoint(self.checkpoint)
        payload.update(changes)
        return payload

    def torch_file(self, name: str, obj) -> Path:
        path = self.root / name
        torch.save(obj, path)
        return path

    def predict(self, checkpoint=None, image=None, *extra) -> list:
        outputs = [] if any(str(e).startswith("--labels") or str(e).startswith("--probabilities") for e in extra) \
            else ["--labels", self.out]
        return ["predict", checkpoint or self.checkpoint, image or self.image, "--device", "cpu", "--no-amp",
                *extra, *outputs]


@pytest.fixture
def kit(tmp_path) -> Kit:
    return Kit(tmp_path)


# --------------------------------------------------------------------------- #
# 1. Checkpoints: data, never code; corrupt or foreign files are named
# --------------------------------------------------------------------------- #
MARKER = "code-ran.marker"


class RunsCode:
    """Unpickling this would run code (create MARKER beside the checkpoint)."""

    def __init__(self, folder: Path) -> None:
        self.marker = str(folder / MARKER)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _flip_a_weight_byte(kit: Kit) -> Path:
    """Flip one bit in the middle of the largest tensor's bytes inside the zip (the file stays a valid zip)."""
    raw = bytearray(kit.checkpoint.read_bytes())
    with zipfile.ZipFile(kit.checkpoint) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x01
    return kit.file("flipped.pt", bytes(raw))


def _wide_config(kit: Kit) -> Path:
    """A config claiming width 60000 beside width-2 tensors: must be refused without allocating the network."""
    payload = kit.payload()
    payload["model_config"] = {**payload["model_config"], "width": 60000}
    return kit.torch_file("wide.pt", payload)


def _raw_pickle(kit: Kit) -> Path:
    path = kit.root / "legacy.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "unetlib-checkpoint-v2", "x": RunsCode(kit.root)}, f, protocol=4)
    return path


def _a_folder(kit: Kit) -> Path:
    (kit.root / "run").mkdir()
    return kit.root / "run"


CHECKPOINTS = {
    # case: (make the bad checkpoint, words the message must contain)
    "truncated": (lambda k: k.file("bad.pt", k.checkpoint.read_bytes()[: k.checkpoint.stat().st_size // 2]),
                  "cannot be read safely"),
    "zero bytes": (lambda k: k.file("bad.pt", b""), "cannot be read safely"),
    "random bytes": (lambda k: k.file("bad.pt", np.random.default_rng(0).bytes(4096)), "cannot be read safely"),
    "plain dict without format": (lambda k: k.torch_file("bad.pt", {"weights": torch.zeros(3)}),
                                  "not a unetlib checkpoint"),
    "a bare tensor": (lambda k: k.torch_file("bad.pt", torch.zeros(3)), "not a unetlib checkpoint"),
    "pickled code (torch.save)": (lambda k: k.torch_file("bad.pt", {**k.payload(), "extra": RunsCode(k.root)}),
                                  "never unpickled"),
    "pickled code (legacy pickle)": (_raw_pickle, "cannot be read safely"),
    "flipped byte in a weight": (_flip_a_weight_byte, "corrupt"),
    "wrong format string": (lambda k: k.torch_file("bad.pt", k.payload(format="unetlib-checkpoint-v1")),
                            "unetlib-checkpoint-v1"),
    "model_config with an unknown key": (
        lambda k: k.torch_file("bad.pt", k.payload(model_config={**k.payload()["model_config"], "depth": 5})),
        "malformed model_config"),
    "model_config width of the wrong type": (
        lambda k: k.torch_file("bad.pt", k.payload(model_config={**k.payload()["model_config"], "width": "2"})),
        "malformed model_config"),
    "model_config that does not fit the tensors": (_wide_config, "does not match its own model configuration"),
    "model_state not tensors": (lambda k: k.torch_file("bad.pt", k.payload(model_state={"w": [1, 2]})),
                                "no valid model_state"),
    "a folder instead of a file": (_a_folder, "is a folder"),
    "missing file": (lambda k: k.root / "nope.pt", "does not exist"),
}


@pytest.mark.parametrize("image", ["in.tif", "in.png"])
def test_swapped_arguments_are_recognised_not_called_a_corrupt_checkpoint(kit, capsys, image):
    """`unetlib predict IMAGE CHECKPOINT`: the image is named as an image, never as a checkpoint to delete."""
    path = kit.image if image == "in.tif" else _png(kit, "in.png", np.zeros((20, 20), np.uint8))
    line = refused(capsys, kit.root, kit.predict(path, kit.checkpoint),
                   names=[f"{path} is an image, not a checkpoint: the checkpoint comes first"])
    assert "delete" not in line and "corrupt" not in line
    renamed = kit.file("weights.pt", path.read_bytes())  # named like a checkpoint: the content decides
    refused(capsys, kit.root, kit.predict(renamed, kit.checkpoint), names=[f"{renamed} is an image"])


def test_the_code_probe_really_runs_code_when_unpickled(tmp_path):
    """Control: plain pickle runs RunsCode's payload, so an absent marker below means the loader refused it."""
    pickle.loads(pickle.dumps(RunsCode(tmp_path)))
    assert (tmp_path / MARKER).read_text() == "pwned"


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_bad_checkpoint_is_refused_by_predict(kit, capsys, case):
    make, words = CHECKPOINTS[case]
    bad = make(kit)
    line = refused(capsys, kit.root, kit.predict(bad), names=[bad])
    assert words in line
    assert not (kit.root / MARKER).exists(), "the checkpoint ran code"


def test_crafted_model_config_is_refused_before_the_network_is_allocated(kit, capsys, monkeypatch):
    import unetlib.checkpoint

    built = []
    monkeypatch.setattr(unetlib.checkpoint, "UNet", lambda **config: built.append(config) or UNet(**config))
    wide = _wide_config(kit)
    refused(capsys, kit.root, kit.predict(wide), names=[wide, "conv_d0a_b.weight", "60000"])
    assert built == []


def test_code_in_a_checkpoint_never_runs_even_when_resuming_training(tmp_path, capsys, data_root):
    """The same crafted file as --out/last.pt: train refuses to resume from it and leaves it in place."""
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "unetlib-checkpoint-v2", "x": RunsCode(tmp_path)}, out / "last.pt")
    argv = ["train", "isbi2012", "--profile", "smoke", "--iterations", "2", "--slices", "0-1",
            "--data", data_root, "--out", out]
    line = refused(capsys, tmp_path, argv, names=[out / "last.pt", "never unpickled", "--no-resume"])
    assert line.startswith("unetlib train: error: cannot resume:")  # before the data are even read
    assert not (tmp_path / MARKER).exists()


def test_truncated_checkpoint_in_the_out_folder_is_named_and_kept(trained_run, tmp_path, capsys, data_root):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    refused(capsys, tmp_path, _train_argv(data_root, out, "--iterations", "4"), names=[last, "--no-resume"])


def test_no_resume_starts_afresh_beside_an_existing_checkpoint(trained_run, tmp_path, capsys, data_root):
    """--no-resume was accepted but ignored: a run of 1 iteration "resumed" the 2-iteration checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    code, _, err = cli(capsys, _train_argv(data_root, out, "--iterations", "1", "--no-resume"))
    assert code == 0, err
    saved = load_checkpoint(out / "last.pt")
    assert saved["iteration"] == 1 and len(saved["history"]) == 1


# --------------------------------------------------------------------------- #
# 2. Images for predict
# --------------------------------------------------------------------------- #
def _png(kit: Kit, name: str, array: np.ndarray) -> Path:
    from skimage import io as skio

    skio.imsave(kit.root / name, array, check_contrast=False)
    return kit.root / name


def _empty_tiff(kit: Kit) -> Path:
    with pytest.warns(UserWarning):  # tifffile warns that a 0-pixel TIFF is nonconformant
        return kit.tiff("empty.tif", np.zeros((0, 20), np.uint8))


def _with(value, dtype=np.float32):
    image = np.full((20, 20), 0.5, dtype)
    image[3, 4] = value
    return image


IMAGES = {
    # case: (make the bad image, words the message must contain)
    "RGB TIFF (H, W, 3)": (lambda k: k.tiff("rgb.tif", np.zeros((20, 20, 3), np.uint8), photometric="rgb"),
                           "colour image"),
    "RGBA PNG": (lambda k: _png(k, "rgba.png", np.zeros((20, 20, 4), np.uint8)), "colour image"),
    "4-D stack": (lambda k: k.tiff("4d.tif", np.zeros((2, 3, 20, 20), np.uint8), photometric="minisblack"),
                  "(2, 3, 20, 20)"),
    "1-D line": (lambda k: k.tiff("1d.tif", np.zeros(20, np.uint8)), "(20,)"),
    "empty (0 pixels)": (_empty_tiff, "empty"),
    "non-numeric (complex) pixels": (lambda k: k.tiff("complex.tif", np.zeros((20, 20), np.complex64)),
                                     "complex64"),
    "NaN pixel": (lambda k: k.tiff("nan.tif", _with(np.nan)), "NaN"),
    "infinite pixel": (lambda k: k.tiff("inf.tif", _with(np.inf)), "infinite"),
    "huge values (1e30)": (lambda k: k.tiff("huge.tif", np.full((20, 20), 1e30, np.float32)), "1e+30"),
    "one huge value among normal ones": (lambda k: k.tiff("spike.tif", _with(-1e30)), "--normalize zscore"),
    "text file named .tif": (lambda k: k.file("text.tif", b"this is not a TIFF\n"), "cannot read"),
    "text file named .png": (lambda k: k.file("text.png", b"this is not a PNG\n"), "cannot read"),
    "truncated TIFF": (lambda k: k.file("cut.tif", k.image.read_bytes()[:100]), "cannot read"),
    "missing file": (lambda k: k.root / "nope.tif", "does not exist"),
    "a folder": (lambda k: (k.root / "images").mkdir() or k.root / "images", "is a folder"),
}


@pytest.mark.parametrize("case", IMAGES)
def test_bad_image_is_refused_by_predict(kit, capsys, case):
    make, words = IMAGES[case]
    bad = make(kit)
    line = refused(capsys, kit.root, kit.predict(None, bad, "--probabilities", kit.root / "p.tif",
                                                 "--labels", kit.out), names=[bad])
    assert words in line


def test_huge_values_are_fine_when_the_scaling_bounds_them(kit, capsys):
    """The 1e30 refusal is about unscaled inputs: zscore scaling makes the same image a valid input."""
    image = np.full((20, 20), 1e30, np.float32)
    image[5:10, 5:10] = -1e30
    path = kit.tiff("huge.tif", image)
    code, _, err = cli(capsys, kit.predict(None, path, "--normalize", "zscore", "--probabilities", kit.out))
    assert code == 0, err
    assert np.isfinite(tifffile.imread(kit.out)).all()


def _twelve_bit(kit: Kit) -> tuple[np.ndarray, Path]:
    """A 12-bit camera's frame stored as uint16: the values of the kit's 8-bit image times 16 (up to 4,095)."""
    image8 = tifffile.imread(kit.image)
    image12 = (image8.astype(np.uint16) * 16 + image8 // 16).astype(np.uint16)  # 255 -> 4095
    assert image12.max() == 4095
    return image12, kit.tiff("twelve.tif", image12)


def test_a_twelve_bit_image_under_unit_scaling_is_refused_naming_the_bit_depth(kit, capsys):
    """uint16 values up to 4,095 would be divided by 65,535 (the network would see a nearly black image)."""
    _, path = _twelve_bit(kit)
    line = refused(capsys, kit.root, kit.predict(None, path, "--probabilities", kit.root / "p.tif"),
                   names=[path, "4,095", "12 bits", "--bit-depth 12", "--bit-depth 16", "0.062"])
    assert "65,535" in line


def test_bit_depth_scales_a_twelve_bit_image_as_its_eight_bit_original(kit, capsys):
    """With --bit-depth 12 the network sees the same inputs (to 8-bit rounding) as the 8-bit original, and the
    summary line says how the image was scaled."""
    _, path = _twelve_bit(kit)
    code, out, err = cli(capsys, kit.predict(None, path, "--bit-depth", "12", "--probabilities", kit.root / "p12.tif"))
    assert code == 0, err
    assert "input scaling 'unit' of 12-bit values (/ 4,095)" in out
    code, out, err = cli(capsys, kit.predict(None, kit.image, "--probabilities", kit.root / "p8.tif"))
    assert code == 0, err and "-bit values" not in out
    p12, p8 = tifffile.imread(kit.root / "p12.tif"), tifffile.imread(kit.root / "p8.tif")
    assert np.abs(p12 - p8).max() < 1e-3  # 4095 * k/255 vs k: equal scaled inputs up to 1/(16 * 255)
    code, _, err = cli(capsys, kit.predict(None, path, "--bit-depth", "16", "--probabilities", kit.root / "p16.tif"))
    assert code == 0, err  # a dark 16-bit image: the user says so


BIT_DEPTHS = {
    # case: (image dtype and peak, options, words the message must contain)
    "values beyond the depth": (np.uint16, 5000, ["--bit-depth", "12"], ["--bit-depth 12", "5,000", "4,095", "14"]),
    "a depth above the dtype's bits": (np.uint8, 200, ["--bit-depth", "12"], ["--bit-depth 12", "uint8", "1 to 8"]),
    "a float image": (np.float32, 1, ["--bit-depth", "12"], ["--bit-depth 12", "float32", "drop it"]),
    "another scaling": (np.uint16, 4095, ["--bit-depth", "12", "--normalize", "zscore"], ["'zscore'", "drop --bit-depth"]),
    "zero bits": (np.uint16, 0, ["--bit-depth", "0"], ["--bit-depth 0", "1 to 16"]),
}


@pytest.mark.parametrize("case", BIT_DEPTHS)
def test_a_bit_depth_that_does_not_fit_the_image_is_refused(kit, capsys, case):
    dtype, peak, options, names = BIT_DEPTHS[case]
    image = np.zeros((20, 20), dtype)
    image[3, 4] = peak
    path = kit.tiff("image.tif", image)
    about_the_image = "--normalize" not in options  # a scaling that takes no bit depth is about the options
    refused(capsys, kit.root, kit.predict(None, path, *options, "--probabilities", kit.root / "p.tif"),
            names=[path] * about_the_image + names)


def test_unit_scaling_of_the_kits_own_data_is_unchanged_by_the_bit_depth_option():
    """Training on the kit's (8-bit) datasets calls normalize_image without a bit depth: uint8 / 255 exactly."""
    from unetlib.preprocess import bits_held, normalize_image

    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(normalize_image(image, "unit"), image.astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_array_equal(normalize_image(image, "unit", 8), normalize_image(image, "unit"))
    assert [bits_held(v) for v in (0, 255, 256, 1023, 4095, 4096, 16383, 16384, 65535)] == [8, 8, 10, 10, 12, 14, 14,
                                                                                            16, 16]


# --------------------------------------------------------------------------- #
# 3. Outputs: never over an input, never two outputs in one file, folders refused before any work
# --------------------------------------------------------------------------- #
def _outputs_case(kit: Kit, case: str) -> tuple[list, list]:
    """(output options, names the message must contain) for one case; may create links."""
    root = kit.root
    if case == "--labels ./in.tif (relative spelling of the image)":
        return ["--labels", "./in.tif"], ["./in.tif", "image"]
    if case == "--labels sub/../in.tif":
        return ["--labels", "sub/../in.tif"], ["sub/../in.tif", "image"]
    if case == "--labels a symlink to the image":
        (root / "link.tif").symlink_to(kit.image)
        return ["--labels", root / "link.tif"], [root / "link.tif", "image"]
    if case == "--labels a hard link of the image":
        os.link(kit.image, root / "hard.tif")
        return ["--labels", root / "hard.tif"], [root / "hard.tif", "image"]
    if case == "--labels ./x.tif and --probabilities x.tif":
        return ["--probabilities", "x.tif", "--labels", "./x.tif"], ["same file", "x.tif"]
    if case == "--labels a symlink to --probabilities":
        (root / "y-link.tif").symlink_to(root / "y.tif")
        return ["--probabilities", root / "y.tif", "--labels", root / "y-link.tif"], ["same file"]
    if case == "output ends with a slash (a folder to be)":
        return ["--labels", f"{root / 'new'}/"], ["is a folder", root / "new"]
    if case == "output below a file":
        return ["--labels", kit.image / "x.tif"], [kit.image / "x.tif", "not a folder"]
    raise AssertionError(case)


OUTPUT_CASES = [
    "--labels ./in.tif (relative spelling of the image)", "--labels sub/../in.tif",
    "--labels a symlink to the image", "--labels a hard link of the image",
    "--labels ./x.tif and --probabilities x.tif",
    "--labels a symlink to --probabilities",
    "output ends with a slash (a folder to be)", "output below a file",
]


# --labels = the image, --probabilities = the checkpoint, --labels = --probabilities (same spelling) and an
# existing folder are asserted by tests/test_tiling.py::test_cli_refuses_outputs_over_inputs_each_other_or_folders.
@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_bad_output_path_is_refused_before_any_work(kit, capsys, monkeypatch, case):
    monkeypatch.chdir(kit.root)
    outputs, names = _outputs_case(kit, case)
    argv = ["predict", kit.checkpoint, kit.image, "--device", "cpu", "--no-amp", *outputs]
    refused(capsys, kit.root, argv, names=names)


def test_output_in_a_read_only_folder_is_refused_before_any_work(kit, capsys, monkeypatch):
    """chmod 555; as root (where chmod does not stop writes) the permission check is simulated."""
    folder = kit.root / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root
            real = os.access
            monkeypatch.setattr("unetlib.userfiles.os.access",
                                lambda path, mode: False if Path(path) == folder else real(path, mode))
        refused(capsys, kit.root, kit.predict(None, None, "--labels", folder / "x.tif"),
                names=[folder, "not writable"])
    finally:
        folder.chmod(0o755)


def test_write_refused_by_the_file_system_keeps_the_previous_output(kit, capsys, monkeypatch):
    """EACCES at write time (e.g. permissions changed while predicting): one line, old output intact."""
    kit.tiff("out.tif", np.ones((20, 20), np.uint8))

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("unetlib.atomic.tempfile.mkstemp", denied)
    refused(capsys, kit.root, kit.predict(), names=[kit.out, "not writable"])


def test_full_disk_while_writing_keeps_the_previous_output(kit, capsys, monkeypatch):
    kit.tiff("out.tif", np.ones((20, 20), np.uint8))
    real = tifffile.imwrite

    def half_then_full(file, data, *args, **kwargs):
        buffer = io.BytesIO()
        real(buffer, data, *args, **kwargs)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", half_then_full)
    refused(capsys, kit.root, kit.predict(), names=[kit.out, "disk space"])


def test_previous_good_outputs_stay_when_the_command_fails(kit, capsys):
    labels = kit.tiff("out.tif", np.ones((20, 20), np.uint8))
    probabilities = kit.tiff("p.tif", np.full((2, 20, 20), 0.5, np.float32))
    bad = kit.tiff("nan.tif", _with(np.nan))
    refused(capsys, kit.root, kit.predict(None, bad, "--labels", labels, "--probabilities", probabilities),
            names=[bad])  # `refused` checks both outputs are byte-identical


# --------------------------------------------------------------------------- #
# 4. Values by range: refused before anything is read or written
# --------------------------------------------------------------------------- #
TRAIN_VALUES = {
    # case: (options, names the message must contain)
    "--seed -1": (["--seed", "-1"], ["--seed", "-1"]),
    "--iterations -5": (["--iterations", "-5"], ["--iterations", "-5"]),
    # TrainConfig allows 0 (a no-op loop for library users); on the command line it would only
    # write an untrained network, so it is refused
    "--iterations 0": (["--iterations", "0"], ["--iterations", "0", "at least 1"]),
    "--iterations 1.5": (["--iterations", "1.5"], ["--iterations", "1.5"]),
    "--width 0": (["--width", "0"], ["--width", "0"]),
    "--tile 500": (["--tile", "500"], ["--tile", "500", "492 or 508"]),
    "--tile 0": (["--tile", "0"], ["--tile", "0", "188"]),
    "--tile abc": (["--tile", "abc"], ["--tile", "abc"]),
    "--lr nan": (["--lr", "nan"], ["--lr", "nan"]),
    "--lr -1": (["--lr", "-1"], ["--lr", "-1"]),
    "--lr inf": (["--lr", "inf"], ["--lr", "inf"]),
    "--checkpoint-every 0": (["--checkpoint-every", "0"], ["--checkpoint-every", "0"]),
    "--slices 40-50": (["--slices", "40-50"], ["--slices", "40-50", "0-29"]),
    "--slices 9-3": (["--slices", "9-3"], ["--slices", "9-3"]),
    "--slices empty": (["--slices", ""], ["--slices", "0-19"]),
    "--profile unknown": (["--profile", "fast"], ["--profile", "fast"]),
}


def _train_argv(data_root, out, *options, dataset="isbi2012"):
    return ["train", dataset, "--profile", "smoke", "--slices", "0-1", "--data", data_root, "--out", out, *options]


@pytest.mark.parametrize("case", TRAIN_VALUES)
def test_bad_train_value_is_refused_before_anything_is_written(tmp_path, capsys, case):
    options, names = TRAIN_VALUES[case]
    absent = tmp_path / "no-datasets"  # refused before any dataset is read
    argv = ["train", "isbi2012", "--profile", "smoke", "--data", absent, "--out", tmp_path / "run", *options]
    refused(capsys, tmp_path, argv, names=names)
    assert not (tmp_path / "run").exists()


def test_slices_for_a_cell_tracking_dataset_is_refused(tmp_path, capsys):
    absent = tmp_path / "no-datasets"  # refused before any dataset is read
    refused(capsys, tmp_path, _train_argv(absent, tmp_path / "run", dataset="PhC-C2DH-U373"),
            names=["--slices", "isbi2012 only"])


@pytest.mark.parametrize("case", ["a file", "below a file"])
def test_train_out_that_cannot_be_a_folder_is_refused(tmp_path, capsys, data_root, case):
    (tmp_path / "notes.txt").write_text("keep me\n")
    out = tmp_path / "notes.txt" if case == "a file" else tmp_path / "notes.txt" / "run"
    refused(capsys, tmp_path, _train_argv(data_root, out, "--iterations", "2"), names=["--out", "notes.txt"])


PREDICT_VALUES = {
    "--batch-size 0": (["--batch-size", "0"], ["--batch-size", "0"]),
    "--batch-size -3": (["--batch-size", "-3"], ["--batch-size", "-3"]),
    "--class 5": (["--class", "5", "--probabilities", "p.tif"], ["--class 5", "0..1"]),
    "--class -1": (["--class", "-1", "--probabilities", "p.tif"], ["--class -1", "0..1"]),
    "--class x": (["--class", "x", "--probabilities", "p.tif"], ["--class", "'x'"]),
    "--tile abc": (["--tile", "abc"], ["--tile", "abc"]),
    "--tile 444x500": (["--tile", "444x500"], ["--tile 444x500", "492 or 508"]),
    "--tile 0": (["--tile", "0"], ["--tile 0", "188"]),
    "--tile 1x2x3": (["--tile", "1x2x3"], ["--tile", "1x2x3"]),
    "--tta unknown": (["--tta", "rotations"], ["--tta", "rotations"]),
}


@pytest.mark.parametrize("case", PREDICT_VALUES)
def test_bad_predict_value_is_refused_before_anything_is_written(kit, capsys, monkeypatch, case):
    monkeypatch.chdir(kit.root)
    options, names = PREDICT_VALUES[case]
    refused(capsys, kit.root, kit.predict(None, None, *options, "--labels", kit.out), names=names)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_predict_on_cuda_without_a_gpu_is_refused_before_reading(kit, capsys):
    argv = ["predict", kit.checkpoint, kit.image, "--device", "cuda", "--labels", kit.out]
    refused(capsys, kit.root, argv, names=["--device cuda", "--device cpu"])


# --------------------------------------------------------------------------- #
# 5. evaluate
# --------------------------------------------------------------------------- #
def _labels() -> np.ndarray:
    labels = np.zeros((20, 20), np.uint16)
    labels[2:8, 2:8] = 1
    labels[10:18, 10:18] = 2
    return labels


@pytest.fixture
def ctc(tmp_path):
    """A 2-frame GT folder (frames 0 and 2) and a matching result folder."""
    seg = tmp_path / "01_GT" / "SEG"
    seg.mkdir(parents=True)
    res = tmp_path / "01_RES"
    res.mkdir()
    for t in (0, 2):
        tifffile.imwrite(seg / f"man_seg{t:03d}.tif", _labels())
        tifffile.imwrite(res / f"mask{t:03d}.tif", _labels())
    return tmp_path


def _result_folder(root: Path, mask0: np.ndarray | bytes, **kwargs) -> Path:
    res = root / "bad_RES"
    res.mkdir()
    if isinstance(mask0, bytes):
        (res / "mask000.tif").write_bytes(mask0)
    else:
        tifffile.imwrite(res / "mask000.tif", mask0, **kwargs)
    tifffile.imwrite(res / "mask002.tif", _labels())
    return res


CTC_CASES = {
    # case: (make (RES, GT) folders, names the message must contain)
    "result folder missing": (lambda r: (r / "02_RES", r / "01_GT"), ["02_RES", "does not exist"]),
    "result folder is a file": (lambda r: ((r / "RES.tif").write_bytes(b"x") and r / "RES.tif", r / "01_GT"),
                                ["RES.tif", "not a folder"]),
    "float (non-uint16) mask": (lambda r: (_result_folder(r, _labels().astype(np.float32)), r / "01_GT"),
                                ["mask000.tif", "integer dtype"]),
    "negative labels": (lambda r: (_result_folder(r, -_labels().astype(np.int16)), r / "01_GT"),
                        ["mask000.tif", "negative"]),
    "RGB mask": (lambda r: (_result_folder(r, np.zeros((20, 20, 3), np.uint8), photometric="rgb"), r / "01_GT"),
                 ["mask000.tif", "2-D"]),
    "mask of the wrong shape": (lambda r: (_result_folder(r, _labels()[:10]), r / "01_GT"),
                                ["bad_RES", "(10, 20)", "(20, 20)"]),
    "corrupt mask": (lambda r: (_result_folder(r, b"not a tiff"), r / "01_GT"), ["mask000.tif", "cannot read"]),
    "GT folder without SEG": (lambda r: ((r / "02_GT" / "TRA").mkdir(parents=True) or r / "01_RES", r / "02_GT"),
                              ["02_GT", "man_seg"]),
    "GT folder missing": (lambda r: (r / "01_RES", r / "03_GT"), ["03_GT", "does not exist"]),
    "GT folder is a file": (lambda r: (r / "01_RES", (r / "GT.txt").write_bytes(b"x") and r / "GT.txt"),
                            ["GT.txt", "not a folder"]),
}


@pytest.mark.parametrize("case", CTC_CASES)
def test_bad_ctc_folders_are_named(ctc, capsys, case):
    make, names = CTC_CASES[case]
    res, gt = make(ctc)
    refused(capsys, ctc, ["evaluate", "ctc", res, gt], names=names)


def test_ctc_gt_without_any_object_is_named(ctc, capsys):
    for path in (ctc / "01_GT" / "SEG").iterdir():
        tifffile.imwrite(path, np.zeros((20, 20), np.uint16))
    refused(capsys, ctc, ["evaluate", "ctc", ctc / "01_RES", ctc / "01_GT"], names=[ctc / "01_GT", "no object"])


def _isbi_pair(root: Path, pred: np.ndarray) -> tuple[Path, Path]:
    gt = np.zeros((2, 20, 20), np.uint8)
    gt[:, 5:15, 5:15] = 255
    tifffile.imwrite(root / "gt.tif", gt)
    tifffile.imwrite(root / "pred.tif", pred, photometric="minisblack")
    return root / "pred.tif", root / "gt.tif"


@pytest.mark.parametrize("case", ["other slice count", "prediction is text", "prediction is a folder"])
def test_bad_isbi_inputs_are_named(tmp_path, capsys, case):
    pred, gt = _isbi_pair(tmp_path, np.full((3, 20, 20), 0.5, np.float32))
    if case == "prediction is text":
        pred.write_bytes(b"P(cell) = 0.5 everywhere\n")
    elif case == "prediction is a folder":
        pred = tmp_path / "predictions"
        pred.mkdir()
    names = [pred, gt, "(3, 20, 20)"] if case == "other slice count" else [pred]
    refused(capsys, tmp_path, ["evaluate", "isbi2012", pred, gt], names=names)


def test_write_ctc_results_is_atomic_and_keeps_uint16(tmp_path, monkeypatch):
    """A failed write (full disk) leaves the previous masks as they were; a good write stays uint16."""
    from unetlib.metrics.ctc import read_ctc_results, write_ctc_results

    res = tmp_path / "01_RES"
    write_ctc_results({0: _labels(), 1: _labels().astype(np.int64) * 3}, res)  # int64 labels in, uint16 out
    assert sorted(p.name for p in res.iterdir()) == ["mask000.tif", "mask001.tif"]
    assert all(tifffile.imread(p).dtype == np.uint16 for p in res.iterdir())
    before = snapshot(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    with pytest.raises(UnetlibError, match="mask000.tif.*disk space"):
        write_ctc_results({0: np.zeros((20, 20), np.int64), 1: np.zeros((20, 20), np.int64)}, res)
    assert_unchanged(before, snapshot(tmp_path))
    monkeypatch.undo()
    with pytest.raises(UnetlibError, match="does not fit uint16"):  # checked before any frame is written
        write_ctc_results({0: np.zeros((20, 20), np.int64), 1: np.full((20, 20), 70000, np.int64)}, res)
    assert_unchanged(before, snapshot(tmp_path))
    np.testing.assert_array_equal(read_ctc_results(res)[1], _labels() * 3)


# --------------------------------------------------------------------------- #
# 6. Environment: data root, caches, reports, result files, unreadable files
# --------------------------------------------------------------------------- #
def test_verify_with_a_missing_data_root(tmp_path, capsys):
    refused(capsys, tmp_path, ["data", "verify", "--root", tmp_path / "nonexistent"],
            names=[tmp_path / "nonexistent", "unetlib data fetch"])


@pytest.mark.parametrize("command", [["data", "verify"], ["data", "info"], ["data", "verify", "isbi2012"]],
                         ids=["verify", "info", "verify isbi2012"])
def test_unetlib_data_pointing_to_a_file(tmp_path, capsys, monkeypatch, command):
    (tmp_path / "root.txt").write_text("not a folder\n")
    monkeypatch.setenv("UNETLIB_DATA", str(tmp_path / "root.txt"))
    refused(capsys, tmp_path, command, names=[tmp_path / "root.txt", "$UNETLIB_DATA", "not a folder"])


def test_train_with_unetlib_data_pointing_to_a_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "root.txt").write_text("not a folder\n")
    monkeypatch.setenv("UNETLIB_DATA", str(tmp_path / "root.txt"))
    argv = ["train", "isbi2012", "--profile", "smoke", "--out", tmp_path / "run"]
    refused(capsys, tmp_path, argv, names=[tmp_path / "root.txt", "UNETLIB_DATA"])


def test_train_with_a_missing_data_folder(tmp_path, capsys):
    argv = ["train", "isbi2012", "--profile", "smoke", "--data", tmp_path / "nowhere", "--out", tmp_path / "run"]
    refused(capsys, tmp_path, argv, names=[tmp_path / "nowhere", "unetlib data fetch isbi2012"])


@pytest.mark.parametrize("spelling", ["--data-root", "--data"])
def test_train_names_the_data_root_as_data_does(tmp_path, capsys, spelling):
    """One name for one thing: `unetlib train --data-root` as `unetlib data ... --data-root`; the older
    spellings (train --data, data --root) still work and are not listed."""
    argv = ["train", "isbi2012", "--profile", "smoke", spelling, tmp_path / "nowhere", "--out", tmp_path / "run"]
    refused(capsys, tmp_path, argv, names=[tmp_path / "nowhere", "`unetlib data fetch isbi2012` (add --data-root DIR"])
    line = refused(capsys, tmp_path, ["data", "verify", "--data-root", tmp_path / "absent"], names=[tmp_path / "absent"])
    assert line == refused(capsys, tmp_path, ["data", "verify", "--root", tmp_path / "absent"])
    assert "(--data-root)" in line
    for command in (["train"], ["data", "verify"], ["data", "fetch"], ["data", "info"]):
        code, out, _ = cli(capsys, [*command, "--help"])
        assert code == 0 and "--data-root DIR" in out and "deprecated" in out
        assert "--root DIR" not in out and "--data DIR" not in out and "--data DATA" not in out


def test_fetch_into_a_data_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "root.txt").write_text("not a folder\n")
    argv = ["data", "fetch", "isbi2012", "--root", tmp_path / "root.txt", "--url", "http://127.0.0.1:9/",
            "--no-progress"]
    refused(capsys, tmp_path, argv, names=[tmp_path / "root.txt", "not a folder"])


def test_unreadable_input_folder_is_one_line(ctc, capsys, monkeypatch):
    """An OSError the commands do not expect (here: listing the GT folder is denied) is one line, exit 2."""
    seg = ctc / "01_GT" / "SEG"
    real = Path.iterdir

    def iterdir(self):
        if self == seg:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    refused(capsys, ctc, ["evaluate", "ctc", ctc / "01_RES", ctc / "01_GT"], names=[seg, "Permission denied"])


def test_unreadable_image_is_one_line(kit, capsys, monkeypatch):
    """chmod 000; as root (where chmod does not stop reads) the refusal of the file system is simulated."""
    kit.image.chmod(0o000)
    try:
        if os.access(kit.image, os.R_OK):  # root
            def denied(path, *args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))

            monkeypatch.setattr(tifffile, "TiffFile", denied)
        line = refused(capsys, kit.root, kit.predict(), names=[kit.image])
        assert "Permission denied" in line
    finally:
        kit.image.chmod(0o644)


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 98765432100 bytes."),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB"),
], ids=["MemoryError", "cpu-allocator", "cuda"])
def test_out_of_memory_while_predicting_is_one_line(kit, capsys, monkeypatch, error):
    import unetlib.segment

    def no_memory(*args, **kwargs):
        raise error

    kit.tiff("out.tif", np.ones((20, 20), np.uint8))
    monkeypatch.setattr(unetlib.segment, "predict", no_memory)  # the overlap-tile prediction the command runs
    refused(capsys, kit.root, kit.predict(), names=["out of memory", "--tile"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_root):
    """One real 2-iteration smoke run on ISBI slices 0-1 (checkpoint and weight-map cache), to copy from."""
    out = tmp_path_factory.mktemp("trained") / "run"
    code = main([str(a) for a in _train_argv(data_root, out, "--iterations", "2")])
    assert code == 0 and (out / "last.pt").is_file() and len(list((out / "cache").glob("*.npz"))) == 2
    return out


def test_corrupt_cached_weight_map_is_rebuilt_and_the_run_succeeds(trained_run, tmp_path, capsys, data_root):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    victim = sorted((out / "cache").glob("*.npz"))[0]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 3])  # a half-written entry
    code, stdout, err = cli(capsys, _train_argv(data_root, out, "--iterations", "2", "--no-resume"))
    assert code == 0 and "Traceback" not in err and "wrote" in stdout
    with np.load(victim) as repaired:
        assert repaired["weight"].shape == (512, 512) and np.isfinite(repaired["weight"]).all()
    assert load_checkpoint(out / "last.pt")["iteration"] == 2
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(trained_run, tmp_path, capsys, data_root,
                                                                   monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    before = snapshot(tmp_path)
    real = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    code, _, err = cli(capsys, _train_argv(data_root, out, "--iterations", "4"))  # resumes at 2, saves at 4
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]  # after the progress lines of the two steps
    assert line.startswith("unetlib train: error:") and str(out / "last.pt") in line and "disk space" in line
    assert_unchanged(before, snapshot(tmp_path))  # the iteration-2 checkpoint is intact, no temporary file


@pytest.mark.parametrize("text", ['{"00_method": 61.5, "01_isbi2012_em": 1', '{"00_method": "slow"}'],
                         ids=["cut mid-write", "not numbers"])
def test_half_written_timings_json_is_a_note_not_a_crash(tmp_path, capsys, text):
    from unetlib.reproduce import _read_timings

    path = tmp_path / "reports" / "cpu" / "timings.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    before = snapshot(tmp_path)
    assert _read_timings(path) == {}
    line = error_line(capsys.readouterr().err, prefix="note:")
    assert str(path) in line and "starting a new one" in line
    assert_unchanged(before, snapshot(tmp_path))


RESULT_FILES = {
    "truncated JSON": lambda p: p.write_text('{"schema": "unetlib-result-v2", "experiment": "isb'),
    "not UTF-8": lambda p: p.write_bytes(b'{"schema": "\xff\xfe"}'),
    "a JSON list": lambda p: p.write_text('[1, 2, 3]'),
    "another schema": lambda p: p.write_text('{"schema": "unetlib-result-v1", "experiment": "x"}'),
    "fields missing": lambda p: p.write_text('{"schema": "unetlib-result-v2", "experiment": "x"}'),
    "a folder named .json": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("case", RESULT_FILES)
def test_malformed_result_file_is_named(tmp_path, capsys, case):
    from unetlib.results import read_results

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "timings.json").write_text('{"00_method": 61.5}')  # another kind of JSON: skipped silently
    bad = folder / "isbi2012.json"
    RESULT_FILES[case](bad)
    before = snapshot(tmp_path)
    with pytest.raises(UnetlibError) as err:
        read_results(folder)
    assert str(bad) in str(err.value) and len(str(err.value).splitlines()) == 1
    assert read_results(folder, strict=False) == {}
    line = error_line(capsys.readouterr().err, prefix="skipped:")
    assert str(bad) in line
    assert_unchanged(before, snapshot(tmp_path))


def test_reproduce_refuses_a_negative_worker_count(tmp_path, capsys):
    from unetlib.reproduce import main as reproduce_main

    argv = ["--profile", "smoke", "--workers", "-1", "--no-fetch", "--output-dir", str(tmp_path / "reports")]
    assert reproduce_main(argv) == 2
    line = error_line(capsys.readouterr().err, prefix="reproduce: error:")
    assert "--workers" in line and "-1" in line
    assert not (tmp_path / "reports").exists()


def _legacy_pickle_case(kit: Kit):
    return kit.predict(_raw_pickle(kit)), "legacy.pt"


def _rgba_case(kit: Kit):
    return kit.predict(None, _png(kit, "rgba.png", np.zeros((20, 20, 4), np.uint8))), "rgba.png"


ENTRY_POINT = {
    "legacy pickle checkpoint": _legacy_pickle_case,
    "RGBA PNG": _rgba_case,
    "train --tile abc": lambda k: (["train", "isbi2012", "--tile", "abc", "--out", k.root / "run"], "abc"),
    "data verify --root missing": lambda k: (["data", "verify", "--root", k.root / "absent"], "absent"),
}


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`unetlib evaluate ... --json | head`: the reader leaves early; no "Broken pipe" error, no traceback."""
    gt = np.full((3, 64, 64), 255, np.uint8)
    gt[:, ::8] = 0
    tifffile.imwrite(tmp_path / "gt.tif", gt, photometric="minisblack")
    tifffile.imwrite(tmp_path / "p.tif", (gt > 0).astype(np.float32), photometric="minisblack")
    argv = [sys.executable, "-m", "unetlib", "evaluate", "isbi2012", tmp_path / "p.tif", tmp_path / "gt.tif", "--json"]
    done = subprocess.run(f"{' '.join(map(str, argv))} | head -c 10", shell=True, cwd=tmp_path, text=True,
                          capture_output=True, timeout=300, executable="/bin/bash")
    assert done.stdout == '{"warping_' and done.stderr == ""
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # gone before the command writes (it needs seconds to start)
    _, err = process.communicate(timeout=300)
    assert err == b"" and process.returncode == 141


@pytest.mark.parametrize("case", ENTRY_POINT)
def test_the_real_entry_point_prints_one_line(kit, case):
    """``python -m unetlib`` itself (interpreter warnings included): one stderr line, exit 2, nothing written."""
    argv, name = ENTRY_POINT[case](kit)
    before = snapshot(kit.root)
    done = subprocess.run([sys.executable, "-m", "unetlib", *map(str, argv)], cwd=kit.root, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert name in error_line(done.stderr)
    assert not (kit.root / MARKER).exists()
    assert_unchanged(before, snapshot(kit.root))


# --------------------------------------------------------------------------- #
# 7. Signals: SIGTERM / SIGINT save the checkpoint, one line, exit 128 + signal; a rerun resumes
# --------------------------------------------------------------------------- #
def _train_command(data_root, out, iterations: int) -> list[str]:
    return [sys.executable, "-m", "unetlib", "train", "isbi2012", "--profile", "smoke", "--iterations",
            str(iterations), "--width", "4", "--slices", "0-1", "--checkpoint-every", "5", "--data", str(data_root),
            "--out", str(out)]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_the_checkpoint_and_a_rerun_resumes(tmp_path, data_root, signum, code):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(_train_command(data_root, out, 400), cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not (out / "last.pt").is_file():  # in the loop: the first checkpoint (iteration 5) is written
            assert process.poll() is None, f"training ended early: {process.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.2)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]  # after the progress lines (and train's own "interrupted:" line)
    name = signal.Signals(signum).name
    assert last.startswith(f"unetlib train: interrupted by {name};") and str(out / "last.pt") in last, last
    assert "resume" in last
    saved = load_checkpoint(out / "last.pt")
    done = saved["iteration"]
    assert 1 <= done < 400 and len(saved["history"]) == done
    assert f"iteration {done}" in last
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    again = subprocess.run(_train_command(data_root, out, done + 2), cwd=tmp_path, env=env, text=True,
                           capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["iteration"] == done + 2
    assert resumed["history"][:done] == saved["history"]  # continued, not restarted


@pytest.mark.parametrize("how, code", [("SIGTERM", 143), ("Ctrl-C", 130)])
def test_stop_before_the_first_step_is_one_line(tmp_path, capsys, monkeypatch, data_root, how, code):
    """Stopped while the data are prepared: the CLI's own SIGTERM handler, one line, nothing written."""
    import unetlib.trainset

    def stop(*args, **kwargs):
        if how == "SIGTERM":
            signal.raise_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(unetlib.trainset, "training_data", stop)
    handler = signal.getsignal(signal.SIGTERM)
    before = snapshot(tmp_path)
    got, _, err = cli(capsys, _train_argv(data_root, tmp_path / "run", "--iterations", "2"))
    line = error_line(err)
    assert got == code
    assert line.startswith(f"unetlib train: interrupted by {'SIGTERM' if how == 'SIGTERM' else 'SIGINT'};")
    assert "no checkpoint was written" in line
    assert_unchanged(before, snapshot(tmp_path))
    assert signal.getsignal(signal.SIGTERM) == handler  # the CLI restores the handler it replaced


@pytest.mark.parametrize("given, named", [
    ("FOO: 1", "FOO is not a parameter of 06_seeds"),
    ("[w_c-1]", "must be a mapping"),
    ("VARIANTS: [", "not valid YAML"),
    ("OUTPUT_DIR: elsewhere", "--output-dir"),
    ("PROFILE: paper", "--profile"),
    ("WORKERS: -3", "--workers"),
])
def test_reproduce_refuses_bad_notebook_parameters(given, named, tmp_path, capsys):
    from unetlib.reproduce import main as reproduce_main

    argv = ["--profile", "smoke", "--only", "06_seeds", "-y", given, "--no-fetch",
            "--output-dir", str(tmp_path / "reports")]
    assert reproduce_main(argv) == 2
    line = error_line(capsys.readouterr().err, prefix="reproduce: error:")
    assert named in line
    assert not (tmp_path / "reports").exists()


def test_reproduce_passes_notebook_parameters_to_the_reports_that_declare_them(tmp_path, monkeypatch):
    import unetlib.reproduce as reproduce_module

    ran = {}

    def run_notebook(report, profile, folder, root, **params):
        ran[report] = params
        return 0.0

    monkeypatch.setattr(reproduce_module, "run_notebook", run_notebook)
    argv = ["--profile", "smoke", "--only", "03_paper_tables", "06_seeds", "-y", "{VARIANTS: [w_c-1], SEEDS: [0, 5]}",
            "--no-fetch", "--output-dir", str(tmp_path / "reports")]
    assert reproduce_module.main(argv) == 0
    assert ran["06_seeds"] == {"VARIANTS": ["w_c-1"], "SEEDS": [0, 5]}
    assert ran["03_paper_tables"] == {}  # it declares neither
