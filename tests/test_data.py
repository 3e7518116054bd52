"""Dataset root, loaders, manifest and verify: tiny synthetic datasets, then the real ones."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetlib import data
from unetlib import manifest as manifests
from unetlib.cli import main
from unetlib.errors import UnetlibError

U373, HELA = "PhC-C2DH-U373", "DIC-C2DH-HeLa"


# --------------------------------------------------------------------------- slow references


def reference_pixel_digest(array: np.ndarray) -> str:
    shape = "x".join(str(n) for n in array.shape)
    h = hashlib.sha256()
    h.update(f"{array.dtype.name} {shape}\n".encode())
    for value in np.ascontiguousarray(array).reshape(-1).tolist():  # element by element
        h.update(np.array(value, dtype=array.dtype).tobytes())
    return h.hexdigest()


def reference_load_frames(folder: Path, prefix: str) -> dict[int, np.ndarray]:
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith(prefix) and name.endswith(".tif"):
            out[int(name[len(prefix):-4])] = tifffile.imread(folder / name)
    return out


def reference_tracks(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64, ndmin=2)


# --------------------------------------------------------------------------- a tiny CTC dataset


def write_tiny_ctc(root: Path, name: str = U373, n_frames: int = 4, shape=(6, 7)) -> Path:
    """A complete, tiny CTC-layout dataset (LZW TIFFs, like the official ones)."""
    rng = np.random.default_rng(1)
    for seq in data.SEQUENCES:
        raw, gt = root / name / seq, root / name / f"{seq}_GT"
        for sub in (raw, gt / "SEG", gt / "TRA"):
            sub.mkdir(parents=True)
        for t in range(n_frames):
            frame = rng.integers(0, 256, shape, dtype=np.uint8)
            tifffile.imwrite(raw / f"t{t:03d}.tif", frame, compression="lzw")
            marker = np.zeros(shape, np.uint16)
            marker[1:3, 1:3] = 1
            tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", marker, compression="lzw")
        for t in (1, n_frames - 1):
            mask = rng.integers(0, 3, shape).astype(np.uint16)
            tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", mask, compression="lzw")
        (gt / "TRA" / "man_track.txt").write_bytes(f"1 0 {n_frames - 1} 0\r\n2 1 2 1\r\n".encode())
    return root / name


def files_and_mtimes(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- root


def test_data_root_precedence(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("UNETLIB_DATA", str(tmp_path / "env"))
    assert data.data_root(tmp_path / "given") == tmp_path / "given"
    assert data.data_root() == tmp_path / "env"
    monkeypatch.setenv("UNETLIB_DATA", "  ")
    default = data.data_root()
    assert default.name == "data"
    assert default.parent == Path(data.__file__).resolve().parents[1]  # the checkout (editable install)


def test_a_mistyped_unetlib_data_is_refused_not_created(tmp_path, monkeypatch, capsys):
    """A variable naming no folder is refused (naming it and what to set); nothing is created or downloaded."""
    typo = tmp_path / "datsets"
    monkeypatch.setenv("UNETLIB_DATA", str(typo))
    monkeypatch.delenv("UNETLIB_DATA_URL", raising=False)
    with pytest.raises(UnetlibError, match=f"UNETLIB_DATA={typo} names no existing folder") as err:
        data.data_root()
    assert "set UNETLIB_DATA to the folder that holds isbi2012/" in str(err.value)
    assert f"mkdir -p {typo}" in str(err.value)
    assert main(["data", "fetch", "isbi2012", "--no-progress"]) == 2  # refused before any download
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "UNETLIB_DATA" in line and str(typo) in line
    assert not typo.exists()
    with pytest.raises(UnetlibError, match="names no existing folder"):
        data.load_isbi2012()
    assert data.data_root(typo) == typo  # a root given explicitly (--data-root) may still be new: fetch creates it


# --------------------------------------------------------------------------- loaders, synthetic


def test_load_ctc_matches_plain_tifffile(tmp_path):
    folder = write_tiny_ctc(tmp_path)
    seq = data.load_ctc(U373, "02", tmp_path, verify=False)  # synthetic files: not the manifest's
    raw = reference_load_frames(folder / "02", "t")
    seg = reference_load_frames(folder / "02_GT" / "SEG", "man_seg")
    tra = reference_load_frames(folder / "02_GT" / "TRA", "man_track")
    assert (seq.name, seq.sequence) == (U373, "02")
    assert seq.frames.dtype == np.uint8 and seq.frames.shape == (4, 6, 7)
    np.testing.assert_array_equal(seq.frames, np.stack([raw[t] for t in sorted(raw)]))
    assert list(seq.seg) == sorted(seg) == [1, 3]
    for t, mask in seq.seg.items():
        assert mask.dtype == np.uint16
        np.testing.assert_array_equal(mask, seg[t])
    assert seq.tra.dtype == np.uint16
    np.testing.assert_array_equal(seq.tra, np.stack([tra[t] for t in sorted(tra)]))
    np.testing.assert_array_equal(seq.tracks, reference_tracks(folder / "02_GT/TRA/man_track.txt"))
    assert data.load_ctc(U373, 2, tmp_path, tra=False, verify=False).tra is None
    with pytest.raises(UnetlibError, match="does not match the checksum manifest"):
        data.load_ctc(U373, "02", tmp_path)  # the files a training run would read are checked


def test_load_ctc_rejects_bad_arguments(tmp_path):
    with pytest.raises(UnetlibError, match="unknown dataset"):
        data.load_ctc("Fluo-N2DH-GOWT1", "01", tmp_path)
    with pytest.raises(UnetlibError, match="unknown sequence"):
        data.load_ctc(U373, "03", tmp_path)


def test_missing_dataset_names_variable_layout_and_fetch_command(tmp_path):
    with pytest.raises(UnetlibError) as err:
        data.load_ctc(HELA, "01", tmp_path)
    message = str(err.value)
    for needle in ("UNETLIB_DATA", f"unetlib data fetch {HELA}", f"{HELA}/01/tNNN.tif", str(tmp_path)):
        assert needle in message
    with pytest.raises(UnetlibError, match="unetlib data fetch isbi2012") as err:
        data.load_isbi2012(tmp_path / "nowhere")
    assert "does not exist" in str(err.value)


def test_wrong_layouts_are_named(tmp_path):
    (tmp_path / f"{U373}.zip").write_bytes(b"PK")
    with pytest.raises(UnetlibError, match="is not unpacked"):
        data.load_ctc(U373, "01", tmp_path)

    nested = tmp_path / "nested"
    write_tiny_ctc(nested / U373)  # unzipped inside the dataset folder: one level too deep
    with pytest.raises(UnetlibError, match="one level too deep"):
        data.load_ctc(U373, "01", nested)

    flat = tmp_path / "flat" / U373
    flat.mkdir(parents=True)
    tifffile.imwrite(flat / "t000.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(UnetlibError, match="frames lie directly in"):
        data.load_ctc(U373, "01", flat.parent)

    with pytest.raises(UnetlibError, match="looks like a dataset folder itself"):
        data.load_ctc(U373, "01", flat)


def test_truncated_tiff_is_reported_with_its_name(tmp_path):
    folder = write_tiny_ctc(tmp_path, shape=(64, 64))
    frame = folder / "01" / "t002.tif"
    frame.write_bytes(frame.read_bytes()[:200])
    with pytest.raises(UnetlibError, match="t002.tif") as err:
        data.load_ctc(U373, "01", tmp_path)
    assert "unetlib data verify" in str(err.value)
    assert frame.stat().st_size == 200  # nothing rewritten


def test_missing_frame_is_reported(tmp_path):
    folder = write_tiny_ctc(tmp_path)
    (folder / "01" / "t001.tif").unlink()
    with pytest.raises(UnetlibError, match=r"missing frame indices \[1\]"):
        data.load_ctc(U373, "01", tmp_path)


def test_read_man_track_rejects_garbage(tmp_path):
    path = tmp_path / "man_track.txt"
    path.write_text("1 0 4 0\nnot a track\n")
    with pytest.raises(UnetlibError, match="line 2"):
        data.read_man_track(path)


# --------------------------------------------------------------------------- manifest + verify, synthetic


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.arange(12, dtype=np.uint16).reshape(3, 4)[:, ::2],  # not C-contiguous
])
def test_pixel_digest_matches_reference(array):
    assert manifests.pixel_digest(array) == reference_pixel_digest(array)


def test_pixel_digest_depends_on_shape():
    a = np.arange(12, dtype=np.uint8)
    assert manifests.pixel_digest(a.reshape(3, 4)) != manifests.pixel_digest(a.reshape(4, 3))


def test_manifest_round_trip_and_bytes_hash(tmp_path):
    folder = write_tiny_ctc(tmp_path)
    manifest = manifests.make_manifest(tmp_path, (U373,))
    assert manifests.parse_manifest(manifests.format_manifest(manifest)) == manifest
    entry = manifest[f"{U373}/01/t000.tif"]
    assert entry.method == "bytes"
    assert entry.digest == hashlib.sha256((folder / "01" / "t000.tif").read_bytes()).hexdigest()
    assert len(manifest) == sum(1 for p in folder.rglob("*") if p.is_file())


def test_parse_manifest_rejects_bad_lines():
    with pytest.raises(UnetlibError, match="line 2"):
        manifests.parse_manifest("# header\nnot-a-hash  bytes  a/b.tif\n")
    with pytest.raises(UnetlibError, match="line 1"):
        manifests.parse_manifest(f"{'0' * 64}  bytes  -5  a/b.tif\n")


def test_parse_manifest_reads_sizes_and_old_three_column_lines():
    digest = "ab" * 32
    text = f"{digest}  bytes  1234  a/b c.tif\n{digest}  pixels:uint8:2x3  a/old.tif\n"
    manifest = manifests.parse_manifest(text)
    assert manifest["a/b c.tif"] == manifests.ManifestEntry("a/b c.tif", digest, "bytes", 1234)
    assert manifest["a/old.tif"].size is None  # the 3-column format still parses
    assert manifests.parse_manifest(manifests.format_manifest(manifest)) == manifest


def test_make_manifest_records_file_sizes(tmp_path):
    folder = write_tiny_ctc(tmp_path)
    manifest = manifests.make_manifest(tmp_path, (U373,))
    for rel, entry in manifest.items():
        assert entry.size == (tmp_path / rel).stat().st_size
    line = next(row for row in manifests.format_manifest(manifest).splitlines() if row.endswith("01/t000.tif"))
    assert line.split() == [manifest[f"{U373}/01/t000.tif"].digest, "bytes",
                            str((folder / "01" / "t000.tif").stat().st_size), f"{U373}/01/t000.tif"]


def test_verify_names_every_missing_and_corrupt_file_and_touches_nothing(tmp_path):
    folder = write_tiny_ctc(tmp_path)
    manifest = manifests.make_manifest(tmp_path, (U373,))
    assert manifests.verify(tmp_path, [U373], manifest).ok

    (folder / "01" / "t001.tif").unlink()
    (folder / "02_GT" / "TRA" / "man_track.txt").unlink()
    changed = folder / "02_GT" / "SEG" / "man_seg001.tif"
    raw = bytearray(changed.read_bytes())
    raw[-1] ^= 0xFF
    changed.write_bytes(bytes(raw))
    before = files_and_mtimes(tmp_path)

    report = manifests.verify(tmp_path, [U373], manifest)
    assert not report.ok
    assert report.missing == [f"{U373}/01/t001.tif", f"{U373}/02_GT/TRA/man_track.txt"]
    assert [p for p, _ in report.corrupt] == [f"{U373}/02_GT/SEG/man_seg001.tif"]
    assert report.checked == len(manifest) - 3
    text = str(report)
    assert "man_seg001.tif" in text and "t001.tif" in text and text.splitlines()[-1].startswith("FAILED")
    assert files_and_mtimes(tmp_path) == before


def test_verify_lists_extra_files_as_warnings(tmp_path, capsys):
    folder = write_tiny_ctc(tmp_path)
    manifest = manifests.make_manifest(tmp_path, (U373,))
    (folder / "01_ST" / "SEG").mkdir(parents=True)
    (folder / "01_ST" / "SEG" / "man_seg000.tif").write_bytes(b"silver")
    (folder / "01" / "notes.txt").write_text("x")
    report = manifests.verify(tmp_path, [U373], manifest)
    assert report.extra == [f"{U373}/01/notes.txt", f"{U373}/01_ST/SEG/man_seg000.tif"]
    assert report.ok and report.checked == len(manifest)  # warnings: the manifest's files all match
    text = str(report).splitlines()
    assert sum(line.startswith("EXTRA") for line in text) == 2
    assert "2 extra files not in the manifest (not checked)" in text[-1]

    from unetlib import data_cli  # the CLI prints them and still exits 0

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data_cli, "verify", lambda root, names: manifests.verify(root, names, manifest))
        assert main(["data", "verify", "--root", str(tmp_path), U373]) == 0
    assert "EXTRA    " + str(folder / "01_ST" / "SEG" / "man_seg000.tif") in capsys.readouterr().out


def test_verify_pixel_entries_decode_instead_of_hashing_bytes(tmp_path):
    folder = tmp_path / "isbi2012"
    folder.mkdir()
    stack = np.random.default_rng(0).integers(0, 256, (2, 5, 5), dtype=np.uint8)
    for name in data.ISBI_FILES:
        tifffile.imwrite(folder / name, stack)
    manifest = manifests.make_manifest(tmp_path, ("isbi2012",))
    assert manifest["isbi2012/train-volume.tif"].method == "pixels:uint8:2x5x5"
    # the same pixels in a differently encoded file still pass
    tifffile.imwrite(folder / "train-volume.tif", stack, compression="zlib")
    assert manifests.verify(tmp_path, ["isbi2012"], manifest).ok
    changed = stack.copy()
    changed[1, 2, 3] ^= 1
    tifffile.imwrite(folder / "test-volume.tif", changed)
    report = manifests.verify(tmp_path, ["isbi2012"], manifest)
    assert [p for p, _ in report.corrupt] == ["isbi2012/test-volume.tif"]
    assert "pixel sha256" in report.corrupt[0][1]


def test_verify_reports_absent_datasets_with_hints(tmp_path):
    report = manifests.verify(tmp_path / "missing-root")
    assert not report.ok
    assert report.absent == list(data.DATASETS)
    assert "UNETLIB_DATA" in str(report) and "unetlib data fetch isbi2012" in str(report)


def test_shipped_manifest_covers_every_dataset():
    manifest = manifests.read_manifest()
    per_dataset = {name: 0 for name in data.DATASETS}
    for entry in manifest.values():
        per_dataset[entry.dataset] += 1
    # 3 stacks; U373 2 x (115 + 115 TRA + 1) + 15 + 19 SEG; HeLa 2 x (84 + 84 + 1) + 9 + 9
    assert per_dataset == {"isbi2012": 3, U373: 496, HELA: 356}
    assert {e.method for e in manifest.values() if e.dataset == "isbi2012"} == {"pixels:uint8:30x512x512"}


# --------------------------------------------------------------------------- the real data


def test_shipped_manifest_sizes_match_the_real_files(data_root):
    manifest = manifests.read_manifest()
    sizes = {rel: (data_root / rel).stat().st_size for rel in manifest}
    assert {rel: e.size for rel, e in manifest.items()} == sizes
    assert all(e.size > 0 for e in manifest.values())



def test_real_isbi2012_shapes(data_root):
    isbi = data.load_isbi2012(data_root)
    for stack in (isbi.train_images, isbi.train_labels, isbi.test_images):
        assert stack.shape == (30, 512, 512) and stack.dtype == np.uint8
    assert set(np.unique(isbi.train_labels).tolist()) == {0, 255}


@pytest.mark.parametrize("name, counts", [(U373, (15, 19)), (HELA, (9, 9))])
def test_real_ctc_annotated_frame_counts(data_root, name, counts):
    total = 0
    for seq, expected in zip(data.SEQUENCES, counts):
        sequence = data.load_ctc(name, seq, data_root, tra=False)
        assert len(sequence.seg) == expected
        for mask in sequence.seg.values():
            assert mask.dtype == np.uint16 and mask.shape == sequence.frames.shape[1:]
        assert sequence.frames.dtype == np.uint8
        assert sequence.tra is None
        total += len(sequence.seg)
    assert total == sum(counts)


def test_real_hela_tracking_markers(data_root):
    sequence = data.load_ctc(HELA, "01", data_root)
    assert sequence.frames.shape == (84, 512, 512)
    assert sequence.tra.shape == (84, 512, 512) and sequence.tra.dtype == np.uint16
    assert sequence.tracks.shape == (38, 4)
    labels = set(np.unique(sequence.tra).tolist()) - {0}
    assert labels == set(sequence.tracks[:, 0].tolist())


def test_cli_verify_passes_on_real_root(data_root, capsys):
    assert main(["data", "verify", "--root", str(data_root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("OK: 855 files")


def _linked_copy(data_root: Path, into: Path, copied: str) -> Path:
    """A root whose dataset ``copied`` is a real copy and the others symlinks."""
    into.mkdir()
    for name in data.DATASETS:
        if name == copied:
            shutil.copytree(data_root / name, into / name)
        else:
            (into / name).symlink_to(data_root / name)
    return into


def test_cli_verify_names_the_changed_file(data_root, tmp_path, capsys):
    root = _linked_copy(data_root, tmp_path / "root", "isbi2012")
    # a CTC file: replace one symlinked sequence file by a changed copy
    u373 = root / U373
    u373.unlink()
    shutil.copytree(data_root / U373, u373, copy_function=os.symlink)
    changed = u373 / "02_GT" / "SEG" / "man_seg035.tif"
    raw = bytearray(changed.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    changed.unlink()
    changed.write_bytes(bytes(raw))
    # an ISBI stack: one pixel changed
    volume = root / "isbi2012" / "train-labels.tif"
    stack = tifffile.imread(volume)
    stack[3, 100, 100] = 255 - stack[3, 100, 100]
    tifffile.imwrite(volume, stack)

    assert main(["data", "verify", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    corrupt = [line for line in out.splitlines() if line.startswith("CORRUPT")]
    assert len(corrupt) == 2
    assert any("isbi2012/train-labels.tif" in line for line in corrupt)
    assert any(f"{U373}/02_GT/SEG/man_seg035.tif" in line for line in corrupt)
    # naming one dataset checks only that one
    assert main(["data", "verify", "--root", str(root), HELA]) == 0


def test_real_truncated_tiff_is_a_clear_error(data_root, tmp_path):
    root = _linked_copy(data_root, tmp_path / "root", "isbi2012")
    stack = root / "isbi2012" / "test-volume.tif"
    stack.write_bytes(stack.read_bytes()[: stack.stat().st_size // 2])
    with pytest.raises(UnetlibError, match="test-volume.tif"):
        data.load_isbi2012(root)
    assert main(["data", "verify", "--root", str(root), "isbi2012"]) == 1


def test_cli_info_lists_frame_counts(data_root, capsys):
    assert main(["data", "info", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "train-volume.tif: 30x512x512 uint8" in out
    assert "01: 115 frames of 520x696 uint8; 15 annotated SEG frames" in out
    assert "02: 84 frames of 512x512 uint8; 9 annotated SEG frames" in out


def test_cell_areas_counts_every_labelled_object_of_every_mask():
    a = np.zeros((4, 5), np.uint16)
    a[0, :3] = 1  # 3 px
    a[2:4, 0:2] = 4  # 4 px (labels need not be consecutive)
    b = np.zeros((3, 3), np.uint16)
    b[1, 1] = 2  # 1 px
    assert data.cell_areas([a, b]).tolist() == [3, 4, 1]
    assert data.cell_areas([np.zeros((2, 2), np.uint16)]).tolist() == []
    assert data.cell_areas(m for m in [a]).max() == 4  # any iterable


def test_touching_pairs_counts_each_pair_of_near_cells_once_per_mask():
    a = np.zeros((12, 12), np.uint16)
    a[0:3, 0:3] = 1
    a[0:3, 5:8] = 2  # 2 empty columns between 1 and 2: 3 steps apart, within gap 3, beyond gap 2
    a[9:12, 0:3] = 7  # 7 steps below 1: too far; labels need not be consecutive
    a[5:7, 8:11] = 3  # diagonal to 2: 3 rows down and 1 column over, 4 steps of 4 neighbours
    assert data.touching_pairs([a], gap=3) == 1
    assert data.touching_pairs([a], gap=2) == 0
    assert data.touching_pairs([a], gap=4) == 2  # (1, 2) and (2, 3)
    assert data.touching_pairs([a, a], gap=3) == 2  # summed over masks
    b = np.zeros((3, 5), np.uint16)
    b[:, 0:2], b[:, 2:5] = 5, 6  # cells that touch
    assert data.touching_pairs(iter([b]), gap=1) == 1
    assert data.touching_pairs([np.zeros((4, 4), np.uint16)]) == 0
    for bad in (0, -1, 2.5):
        with pytest.raises(UnetlibError, match="gap"):
            data.touching_pairs([a], gap=bad)
