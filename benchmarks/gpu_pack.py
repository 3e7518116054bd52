"""Pack the dataset frames a GPU run reads into ``.gpu/data`` (a few tens of MB), for offline GPU machines.

Such machines often cannot see the data root and take only a small working
tree. The experiments read the ISBI 2012 stacks and, of each Cell Tracking
Challenge sequence, only the annotated (SEG) frames with their tracking
markers. The pack keeps exactly those, compressed (zlib), in the official
layout; every other frame and marker file becomes an all-zero placeholder of
the right shape (a few hundred bytes), so the loaders' layout checks pass. The
pack is not the dataset: its checksums differ, and it must not be used for
anything but the experiments.

``python -m benchmarks.gpu_pack [--root DATA_ROOT] [--out .gpu/data]`` (``make gpu-pack``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from unetlib import data
from unetlib.atomic import atomic_open


def _write(path: Path, array: np.ndarray) -> None:
    import tifffile

    with atomic_open(path, suffix=".tif") as f:
        tifffile.imwrite(f, array, compression="zlib", photometric="minisblack")


def pack(root: Path | None, out: Path) -> int:
    if out.exists():
        shutil.rmtree(out)
    isbi = data.load_isbi2012(root)
    stacks = {"train-volume": isbi.train_images, "train-labels": isbi.train_labels, "test-volume": isbi.test_images}
    for name, stack in stacks.items():
        _write(out / "isbi2012" / f"{name}.tif", stack)
    for dataset in data.CTC_DATASETS:
        for seq in data.SEQUENCES:
            q = data.load_ctc(dataset, seq, root)
            blank = np.zeros(q.frames.shape[1:], np.uint8)
            for t in range(len(q.frames)):
                keep = t in q.seg
                _write(out / dataset / seq / f"t{t:03d}.tif", q.frames[t] if keep else blank)
                _write(out / dataset / f"{seq}_GT" / "TRA" / f"man_track{t:03d}.tif",
                       q.tra[t] if keep else blank.astype(np.uint16))
            for t, mask in q.seg.items():
                _write(out / dataset / f"{seq}_GT" / "SEG" / f"man_seg{t:03d}.tif", mask)
            src = data.data_root(root) / dataset / f"{seq}_GT" / "TRA" / "man_track.txt"
            shutil.copyfile(src, out / dataset / f"{seq}_GT" / "TRA" / "man_track.txt")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed into {out}: {size / 2**20:.1f} MiB")
    return size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $UNETLIB_DATA or data/)")
    parser.add_argument("--out", type=Path, default=Path(".gpu/data"), help="pack folder (.gpu/data)")
    args = parser.parse_args(argv)
    pack(args.root, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
