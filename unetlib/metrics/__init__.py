"""The challenges' own metrics: ISBI 2012 (U-Net Table 1) and Cell Tracking Challenge SEG (Table 2).

The heavy modules are imported on first use of a name, so that importing
``unetlib.metrics.ctc`` does not compile the numba kernels of the ISBI metrics.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "isbi2012_errors": "isbi2012",
    "pixel_error_curve": "isbi2012",
    "rand_error_curve": "isbi2012",
    "warping_error_curve": "isbi2012",
    "ISBI2012Result": "isbi2012",
    "ErrorCurve": "isbi2012",
    "PIXEL_RAND_THRESHOLDS": "isbi2012",
    "WARPING_THRESHOLDS": "isbi2012",
    "ctc_seg": "ctc",
    "SEGResult": "ctc",
    "read_ctc_results": "ctc",
    "read_ctc_gt": "ctc",
    "evaluate_ctc_folder": "ctc",
    "write_ctc_results": "ctc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'unetlib.metrics' has no attribute {name!r}")
    module = importlib.import_module(f"unetlib.metrics.{_EXPORTS[name]}")
    return getattr(module, name)
