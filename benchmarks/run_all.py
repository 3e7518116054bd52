"""Run every benchmark in turn; each writes JSON and Markdown to reports/benchmarks/.

``python -m benchmarks.run_all [--quick]`` (``make bench``). Run on a quiet machine:
the numbers are wall-clock medians.
"""

import argparse
import importlib
import sys
import time

BENCHMARKS = ("bench_augment", "bench_train", "bench_tiling", "bench_metrics", "bench_parallel")
#: extra runs: the cpu profile's network and optimiser, its tile (508) against smaller and larger ones
VARIANTS = {"bench_train": ["--widths", "16", "--tiles", "380,508,572,700", "--optimizer", "adam",
                            "--iterations", "20", "--rounds", "5",
                            "--name", "train_cpu_profile"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long runs, for checking the scripts")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS)
    args = parser.parse_args(argv)
    for name in args.only or BENCHMARKS:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main(["--quick"] if args.quick else [])
        if name in VARIANTS and not args.quick:
            module.main(VARIANTS[name])
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
