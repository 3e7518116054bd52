"""Fan-out of experiment units (an ISBI fold, a CTC direction) on Dask, for users who outgrow one process.

An experiment driver (:func:`unetlib.protocols.run_isbi2012`,
:func:`~unetlib.protocols.run_ctc`) takes a *runner*: a function
``runner(function, calls)`` that returns ``[function(**kwargs) for kwargs in calls]``
in order. :func:`runner` gives

- the serial runner (``workers=0`` and no scheduler): everything in this process;
- a ``dask.distributed`` runner: a ``LocalCluster`` of ``workers`` processes,
  or an existing cluster by its scheduler address (for example one started
  on Slurm by ``dask-jobqueue``). Each unit is one task; results come back as
  the same typed objects and merge into the same result file as a serial run.

Units read their data from the data root and write only below the output
folder, so the workers must see both (a shared file system on a cluster).
Each local worker gets ``cores / workers`` PyTorch threads; on one GPU the
workers share the device (the networks train concurrently).

Local workers are new processes that import the script which started them
(Python's "spawn"): a script must start the fan-out under
``if __name__ == "__main__":``, or every worker would run the script again.
A script that does not is refused before any worker starts, naming the line.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from unetlib.errors import UnetlibError

__all__ = ["runner", "serial", "Runner"]

#: ``runner(function, calls)`` returns ``[function(**kwargs) for kwargs in calls]``, in order.
Runner = Callable[[Callable, list[dict]], list]


def serial(function: Callable, calls: list[dict]) -> list:
    """Run ``function(**kwargs)`` for each entry of ``calls`` in this process, in order."""
    return [function(**kwargs) for kwargs in calls]


def runner(workers: int = 0, scheduler: str | None = None, threads_per_worker: int | None = None) -> Runner:
    """The serial runner, or a Dask runner on a local cluster of ``workers`` or on ``scheduler``."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UnetlibError(f"workers must be an integer >= 0 (0 runs serially), got {workers!r}")
    if not scheduler and workers == 0:
        return serial
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UnetlibError("the fan-out needs Dask: pip install 'distributed' (or run with WORKERS = 0)") from None
    if scheduler:
        _check_address(scheduler)
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // max(workers, 1))
    return _DaskRunner(Client, LocalCluster, workers, scheduler or None, threads)


_ADDRESS = re.compile(r"((tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


def _check_address(address: str) -> None:
    """A scheduler address must read ``[tcp://]HOST:PORT`` before anything is loaded or started."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address.strip()) or not (
            0 < int(address.rsplit(":", 1)[1]) < 65536):
        raise UnetlibError(f"scheduler address {address!r} is not HOST:PORT (e.g. tcp://10.0.0.1:8786): give the "
                           "address a running Dask scheduler prints")


class _DaskRunner:
    """Submits each call as one Dask task and gathers the results in order."""

    connect_timeout = 10  # seconds to reach an existing scheduler

    def __init__(self, client_cls, cluster_cls, workers: int, scheduler: str | None, threads: int) -> None:
        self._client_cls, self._cluster_cls = client_cls, cluster_cls
        self.workers, self.scheduler, self.threads = workers, scheduler, threads

    def __call__(self, function: Callable, calls: list[dict]) -> list:
        if not calls:
            return []
        cluster = None
        try:
            if self.scheduler:
                client = self._connect()
            else:
                _check_main_guard()
                import dask

                # Dask sets MALLOC_TRIM_THRESHOLD_ for its workers, which switches off glibc's adaptive
                # mmap threshold: every activation buffer is then mapped and unmapped on every step, and
                # a width-16 training step took 0.33 s instead of 0.24 s (docs/performance.md). Unset.
                with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                    cluster = self._cluster_cls(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                dashboard_address=None,
                                                env={"OMP_NUM_THREADS": str(self.threads),
                                                     "MKL_NUM_THREADS": str(self.threads)})
                client = self._client_cls(cluster)
        except (OSError, TimeoutError) as exc:
            raise UnetlibError(f"cannot reach the Dask scheduler {self.scheduler or '(local)'}: {exc}") from None
        try:
            futures = [client.submit(_call, function, kwargs, self.threads, pure=False) for kwargs in calls]
            return client.gather(futures)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _connect(self):
        """A client of the scheduler, or a one-line error when it does not answer within the timeout.

        Dask bounds the TCP connect but not the handshake after it, so a port
        that accepts and never speaks Dask would hang; the attempt runs in a
        daemon thread and is abandoned after ``connect_timeout`` seconds.
        """
        box: dict = {}

        def attempt():
            try:
                box["client"] = self._client_cls(self.scheduler, timeout=self.connect_timeout)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        thread = threading.Thread(target=attempt, name="unetlib-dask-connect", daemon=True)
        thread.start()
        thread.join(self.connect_timeout + 2)
        if "client" in box:
            return box["client"]
        if "error" in box and isinstance(box["error"], (OSError, TimeoutError)):
            raise box["error"]
        if "error" in box:
            raise UnetlibError(f"cannot use the Dask scheduler {self.scheduler}: {box['error']}") from None
        raise UnetlibError(f"the Dask scheduler {self.scheduler} did not answer within {self.connect_timeout} s "
                           "(something listens there, but not a Dask scheduler?): check SCHEDULER / --scheduler")

    def __repr__(self) -> str:
        where = self.scheduler or f"LocalCluster({self.workers} workers x {self.threads} threads)"
        return f"dask runner on {where}"


def _check_main_guard() -> None:
    """Refuse to start local workers from a script's top level outside ``if __name__ == "__main__":``.

    Each worker process imports the main script again; run unguarded, that import
    would start the whole work again in every worker (Dask then reports "Nanny
    failed to start"). Nothing is checked where the main module is no file (a
    notebook, ``python -c``) or the call does not come from its top level.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    line = frame.f_lineno
    if any(node.body[0].lineno <= line <= node.body[-1].end_lineno for node in ast.walk(tree) if _is_main_guard(node)):
        return
    raise UnetlibError(f"{path} starts Dask workers at line {line}, outside `if __name__ == \"__main__\":`; every "
                       "worker imports the script again and would run it too: put the script's work under that "
                       "guard (or run with 0 workers)")


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.ops) != 1:
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    values = {s.value for s in sides if isinstance(s, ast.Constant)}
    return isinstance(node.test.ops[0], ast.Eq) and names == {"__name__"} and values == {"__main__"}


def _call(function: Callable, kwargs: dict, threads: int):
    """One unit inside a worker: quiet (no progress bars) and with its share of the cores."""
    torch.set_num_threads(threads)
    return function(**{**kwargs, "progress": False})
