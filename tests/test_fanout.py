"""The Dask fan-out gives the same numbers as the serial run, and merges into the same result."""

import pytest
import torch

from unetlib import fanout, protocols, recipe
from unetlib.errors import UnetlibError

pytestmark = pytest.mark.slow


def _numbers(result):
    return [(r["direction"], r["seed"], r["SEG"], r["foreground_iou"], [row[1] for row in r["loss_curve"]])
            for r in result.runs]


def test_two_local_workers_give_the_serial_numbers(data_root, tmp_path):
    tiny = recipe.preset("PhC-C2DH-U373", "smoke").replace(**{"train.iterations": 4})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each worker computes with one thread: the same float summation order
    try:
        serial = protocols.run_ctc(tiny, tmp_path / "serial", root=data_root, progress=False)
    finally:
        torch.set_num_threads(threads)
    parallel = protocols.run_ctc(tiny, tmp_path / "dask", root=data_root,
                                 runner=fanout.runner(workers=2, threads_per_worker=1))
    assert _numbers(parallel) == _numbers(serial)
    assert parallel.mean == serial.mean and parallel.recipe == serial.recipe
    for run in parallel.runs:  # the workers wrote their files where a serial run writes them
        assert (tmp_path / "dask" / run["res_dir"]).is_dir() and (tmp_path / "dask" / run["checkpoint"]).is_file()


def test_runner_choices():
    assert fanout.runner(0) is fanout.serial
    assert "2 workers" in repr(fanout.runner(2))
    assert "tcp://10.0.0.1:8786" in repr(fanout.runner(0, "tcp://10.0.0.1:8786"))
    for bad in (-1, 1.5, True):
        with pytest.raises(UnetlibError, match="workers"):
            fanout.runner(bad)


def test_unreachable_scheduler_is_one_line(tmp_path):
    run = fanout.runner(0, "tcp://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(UnetlibError, match="cannot reach the Dask scheduler tcp://127.0.0.1:9"):
        run(lambda **kw: None, [{}])


def _run_script(tmp_path, name: str, text: str):
    import subprocess
    import sys

    (tmp_path / name).write_text(text)
    return subprocess.run([sys.executable, name], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_a_fan_out_from_an_unguarded_script_names_the_main_guard(tmp_path):
    """Dask's workers re-import the script: unguarded, the refusal names the guard and the line, before any
    worker starts (not "Nanny failed to start")."""
    done = _run_script(tmp_path, "unguarded.py", "from unetlib import fanout\n\n"
                       "def work():\n    return fanout.runner(2)(abs, [{'x': -1}])\n\nwork()\n")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "Nanny" not in done.stderr
    assert last == (f"unetlib.errors.UnetlibError: {tmp_path / 'unguarded.py'} starts Dask workers at line 6, "
                    "outside `if __name__ == \"__main__\":`; every worker imports the script again and would run "
                    "it too: put the script's work under that guard (or run with 0 workers)")


def test_a_guarded_script_passes_the_check(tmp_path):
    text = ("from unetlib import fanout\n\ndef work():\n    fanout._check_main_guard()\n    print('checked')\n\n"
            "if '__main__' == __name__:\n    work()\nelse:\n    pass\n")
    done = _run_script(tmp_path, "guarded.py", text)
    assert done.returncode == 0 and done.stdout == "checked\n", done.stderr
