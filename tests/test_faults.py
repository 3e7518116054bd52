"""The second round of bad inputs and faults: nothing lost, nothing hung, no silent wrong answer.

Each case runs the real command line (in-process, as tests/test_bad_inputs.py does, whose helpers
it uses) or the library boundary the notebooks go through, and asserts the exit status, one stderr
line without a traceback naming the value or file, and that no input or earlier output changed and
no temporary was left. Downloads (a trickling source, partial downloads of killed fetches, a
malformed mirror URL) are in tests/test_fetch.py.

Classes: 1. concurrent runs   2. hangs   3. silent wrong answers   4. late validation
5. tracebacks and unclear lines
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from test_bad_inputs import Kit, assert_unchanged, cli, error_line, refused, snapshot

from unetlib import fanout, protocols, recipe
from unetlib.atomic import LOCK_NAME
from unetlib.errors import UnetlibError


@pytest.fixture
def kit(tmp_path) -> Kit:
    return Kit(tmp_path)


def _holding(folder, seconds: float = 30.0) -> subprocess.Popen:
    """Another process holding ``folder`` (as a running command does); returns once the lock exists."""
    code = (f"import time; from unetlib.atomic import folder_lock\n"
            f"with folder_lock({str(folder)!r}, 'training'): time.sleep({seconds})")
    process = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        if (folder / LOCK_NAME).exists():
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the holder never took the lock")


# --------------------------------------------------------------------------- #
# 1. Concurrent runs
# --------------------------------------------------------------------------- #
def test_a_second_training_into_a_busy_folder_is_refused(tmp_path, capsys, data_root):
    out = tmp_path / "run"
    out.mkdir()
    holder = _holding(out)
    try:
        line = refused(capsys, tmp_path, ["train", "isbi2012", "--profile", "smoke", "--iterations", "1",
                                          "--slices", "0-1", "--data", data_root, "--out", out],
                       names=[out, "in use by another training", "pid"])
        assert str(holder.pid) in line
    finally:
        holder.kill()
        holder.wait()


def test_a_second_reproduction_into_a_busy_folder_is_refused(tmp_path, capsys):
    from unetlib.reproduce import main as reproduce_main

    reports = tmp_path / "reports"
    reports.mkdir()
    holder = _holding(reports)
    try:
        before = snapshot(tmp_path)
        code = reproduce_main(["--profile", "smoke", "--only", "03_paper_tables", "--no-fetch",
                               "--output-dir", str(reports)])
        line = error_line(capsys.readouterr().err, prefix="reproduce: error:")
        assert code == 2 and "in use by another" in line and str(reports) in line
        assert_unchanged(before, snapshot(tmp_path))
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    from unetlib.atomic import folder_lock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{socket.gethostname()} {dead.pid}\n")
    with folder_lock(tmp_path, "training"):
        assert (tmp_path / LOCK_NAME).read_text().split()[1] == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


# --------------------------------------------------------------------------- #
# 2. Hangs: a port that accepts but is no Dask scheduler
# --------------------------------------------------------------------------- #
def test_a_port_that_is_no_dask_scheduler_fails_within_its_timeout(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections and never answers
    try:
        run = fanout.runner(0, f"tcp://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setattr(run, "connect_timeout", 2)
        start = time.monotonic()
        with pytest.raises(UnetlibError, match="did not answer within 2 s"):
            run(lambda x: x, [dict(x=1)])
        assert time.monotonic() - start < 20
    finally:
        listener.close()


# --------------------------------------------------------------------------- #
# 3. Silent wrong answers
# --------------------------------------------------------------------------- #
def _ctc(tmp_path, gt, res):
    (tmp_path / "GT" / "SEG").mkdir(parents=True)
    (tmp_path / "RES").mkdir()
    for t, labels in gt.items():
        tifffile.imwrite(tmp_path / "GT" / "SEG" / f"man_seg{t:03d}.tif", labels)
    for name, labels in res.items():
        tifffile.imwrite(tmp_path / "RES" / name, labels)
    return ["evaluate", "ctc", tmp_path / "RES", tmp_path / "GT"]


def test_two_result_files_for_one_frame_are_refused(tmp_path, capsys):
    mask = np.zeros((8, 8), np.uint16)
    mask[2:6, 2:6] = 1
    argv = _ctc(tmp_path, {0: mask}, {"mask000.tif": mask, "mask0000.tif": np.zeros_like(mask)})
    refused(capsys, tmp_path, argv, names=["mask000.tif", "mask0000.tif", "frame 0"])


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_labels_at_the_top_of_their_type_score_exactly(tmp_path, capsys, dtype):
    top = np.iinfo(dtype).max
    mask = np.zeros((8, 8), dtype)
    mask[1:4, 1:4], mask[5:8, 5:8] = top, top - 1
    code, out, err = cli(capsys, [*_ctc(tmp_path, {0: mask}, {"mask000.tif": mask}), "--json"])
    assert code == 0 and not err
    import json

    assert json.loads(out)["SEG"] == 1.0  # a perfect match, whatever the label values


def test_a_grey_plus_alpha_png_is_not_read_as_a_stack(kit, capsys):
    from skimage import io

    io.imsave(kit.root / "la.png", np.zeros((100, 20, 2), np.uint8), check_contrast=False)
    refused(capsys, kit.root, kit.predict(None, kit.root / "la.png"), names=["la.png", "alpha"])


def test_a_tiff_of_two_series_is_refused(kit, capsys):
    with tifffile.TiffWriter(kit.root / "two.tif") as tif:
        tif.write(np.zeros((20, 20), np.uint8))
        tif.write(np.ones((30, 30), np.uint8))
    refused(capsys, kit.root, kit.predict(None, kit.root / "two.tif"), names=["two.tif", "2 separate image series"])


@pytest.mark.parametrize("array, name, words", [
    (np.full((20, 20), 200.0, np.float32), "float255.tif", ["float values up to 200", "divide"]),
    (np.full((20, 20), 200, np.int32), "int32.tif", ["int32", "nearly 0", "uint8"]),
], ids=["0-255 floats", "int32"])
def test_inputs_the_unit_scaling_would_ruin_are_refused(kit, capsys, array, name, words):
    kit.tiff(name, array)
    refused(capsys, kit.root, kit.predict(None, kit.root / name), names=[name, *words])


def test_a_non_tiff_output_name_is_refused(kit, capsys):
    refused(capsys, kit.root, kit.predict(None, None, "--labels", kit.root / "out.png"),
            names=["--labels", "out.png", ".tif"])


@pytest.mark.parametrize("value", [0, 255])
def test_a_one_valued_isbi_ground_truth_is_refused(tmp_path, capsys, value):
    tifffile.imwrite(tmp_path / "p.tif", np.full((2, 16, 16), 0.5, np.float32))
    tifffile.imwrite(tmp_path / "gt.tif", np.full((2, 16, 16), value, np.uint8))
    refused(capsys, tmp_path, ["evaluate", "isbi2012", tmp_path / "p.tif", tmp_path / "gt.tif"],
            names=["gt.tif", "one value", "every error would be 0"])


def test_a_float16_prediction_is_scored(tmp_path, capsys):
    gt = np.full((1, 16, 16), 255, np.uint8)
    gt[:, 8] = 0
    tifffile.imwrite(tmp_path / "p.tif", (gt > 0).astype(np.float16))
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    code, out, err = cli(capsys, ["evaluate", "isbi2012", tmp_path / "p.tif", tmp_path / "gt.tif"])
    assert code == 0 and not err and "pixel error    0.0000000" in out


def _copy_dataset(data_root, tmp_path, name, as_name=None):
    root = tmp_path / "data"
    shutil.copytree(data_root / name, root / (as_name or name))
    return root


def test_training_refuses_a_damaged_dataset_file(tmp_path, capsys, data_root):
    root = _copy_dataset(data_root, tmp_path, "DIC-C2DH-HeLa")
    frame = root / "DIC-C2DH-HeLa" / "01" / "t000.tif"
    raw = bytearray(frame.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit inside the image data
    frame.write_bytes(bytes(raw))
    refused(capsys, tmp_path, ["train", "DIC-C2DH-HeLa", "--profile", "smoke", "--iterations", "1",
                               "--data", root, "--out", tmp_path / "run"], names=["t000.tif"])
    assert not (tmp_path / "run").exists()


def test_training_refuses_another_datasets_files(tmp_path, capsys, data_root):
    root = _copy_dataset(data_root, tmp_path, "PhC-C2DH-U373", as_name="DIC-C2DH-HeLa")
    line = refused(capsys, tmp_path, ["train", "DIC-C2DH-HeLa", "--profile", "smoke", "--iterations", "1",
                                      "--data", root, "--out", tmp_path / "run"])
    assert "does not match the checksum manifest" in line


def test_a_checkpoint_past_the_iterations_asked_for_is_refused(tmp_path, capsys, data_root):
    argv = ["train", "isbi2012", "--profile", "smoke", "--slices", "0-1", "--data", data_root,
            "--out", tmp_path / "run"]
    assert cli(capsys, [*argv, "--iterations", "3"])[0] == 0
    refused(capsys, tmp_path, [*argv, "--iterations", "2"], names=["3 iterations", "2 asked for", "--no-resume"])


def test_resuming_another_datasets_network_is_refused_before_writing(tmp_path, capsys, data_root):
    run = tmp_path / "run"
    assert cli(capsys, ["train", "PhC-C2DH-U373", "--profile", "smoke", "--iterations", "1", "--data", data_root,
                        "--out", run])[0] == 0
    refused(capsys, tmp_path, ["train", "DIC-C2DH-HeLa", "--profile", "smoke", "--iterations", "1",
                               "--data", data_root, "--out", run], names=["another network", "dataset"])


# --------------------------------------------------------------------------- #
# 4. Validated when made (what notebooks' OVERRIDES and the command line go through)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("changes, words", [
    ({"train.tile": "188"}, ["TrainConfig.tile", "integer"]),
    ({"train.tile": 572.9}, ["TrainConfig.tile", "integer"]),
    ({"train.device": "tpu"}, ["TrainConfig.device", "tpu"]),
    ({"train.amp": "no"}, ["TrainConfig.amp", "true or false"]),
    ({"tune_postprocessing": "no"}, ["Recipe.tune_postprocessing", "true or false"]),
    ({"train.augment.rotation": "x"}, ["AugmentParams.rotation", "true or false"]),
    ({"train.momentum": "high"}, ["TrainConfig.momentum", "number"]),
    ({"train.weight_decay": None}, ["TrainConfig.weight_decay", "number"]),
    ({"train.seed": 2**64}, ["TrainConfig.seed", "integer"]),
    ({"min_size": 2.5}, ["Recipe.min_size", "integer"]),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_recipe_fields_of_the_wrong_type_are_refused_when_set(changes, words):
    with pytest.raises(UnetlibError) as err:
        recipe.preset("PhC-C2DH-U373", "cpu").replace(**changes)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_an_empty_fold_list_is_refused():
    with pytest.raises(UnetlibError, match="RUN_FOLDS"):
        protocols.select_folds(protocols.contiguous_folds(30, 5), [])


def test_a_seed_past_int64_is_refused_before_any_work(tmp_path, capsys):
    absent = tmp_path / "no-datasets"  # refused before any dataset is read
    refused(capsys, tmp_path, ["train", "isbi2012", "--profile", "smoke", "--seed", str(2**64), "--slices", "0-1",
                               "--data", absent, "--out", tmp_path / "run"], names=["--seed", str(2**64)])
    assert not (tmp_path / "run").exists()


def test_a_malformed_scheduler_address_is_refused_before_any_work(tmp_path, capsys):
    from unetlib.reproduce import main as reproduce_main

    assert reproduce_main(["--profile", "smoke", "--scheduler", "garbage", "--no-fetch",
                           "--output-dir", str(tmp_path / "reports")]) == 2
    assert "garbage" in error_line(capsys.readouterr().err, prefix="reproduce: error:")
    assert not (tmp_path / "reports").exists()


# --------------------------------------------------------------------------- #
# 5. Tracebacks and unclear lines
# --------------------------------------------------------------------------- #
def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    from unetlib.notebook import output_dir
    from unetlib.reproduce import main as reproduce_main

    (tmp_path / "file").write_text("x")
    assert reproduce_main(["--profile", "smoke", "--no-fetch", "--output-dir", str(tmp_path / "file")]) == 2
    assert "is a file" in error_line(capsys.readouterr().err, prefix="reproduce: error:")
    with pytest.raises(UnetlibError, match="OUTPUT_DIR .* is a file"):
        output_dir(str(tmp_path / "file"), "smoke")  # the notebooks' (03_paper_tables and the others)


def test_a_huge_width_names_the_option_train_has(tmp_path, capsys):
    absent = tmp_path / "no-datasets"  # refused before any dataset is read
    line = refused(capsys, tmp_path, ["train", "isbi2012", "--profile", "smoke", "--width", "100000",
                                      "--slices", "0-1", "--data", absent, "--out", tmp_path / "run"],
                   names=["--width 100000", "GiB"])
    assert "--batch-size" not in line


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_pipe_is_not_called_missing(kit, capsys, tmp_path_factory, special):
    path = special
    if special == "fifo":  # outside the snapshotted folder: reading a pipe would block the snapshot itself
        path = tmp_path_factory.mktemp("pipes") / "pipe.tif"
        os.mkfifo(path)
    line = refused(capsys, kit.root, kit.predict(None, path), names=[path, "not a regular file"])
    assert "does not exist" not in line


def test_argument_errors_of_reproduce_are_one_line(capsys):
    from unetlib.reproduce import main as reproduce_main

    with pytest.raises(SystemExit) as stop:
        reproduce_main(["--bogus"])
    assert stop.value.code == 2
    assert "--bogus" in error_line(capsys.readouterr().err, prefix="python -m unetlib.reproduce: error:")


def test_a_bad_tiff_offset_is_one_line_without_the_readers_log(kit, capsys):
    import struct

    raw = bytearray(kit.image.read_bytes())
    raw[4:8] = struct.pack("<I", 10**6)  # the first IFD offset points past the end of the file
    bad = kit.file("badoffset.tif", bytes(raw))
    refused(capsys, kit.root, kit.predict(None, bad), names=["badoffset.tif"])
