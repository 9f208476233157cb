"""Runs of rows of a stored weight as float32, in buffers kept from tensor to tensor.

Both exports read a weight a run of rows at a time (``_host/tuning.py:
EXPORT_CHUNK_BYTES`` of float32) and widen it exactly.  The float32 buffers are kept by
the thread between tensors: fresh arrays of a run's size take memory from the system and
fault it in again for every run, which on the virtual machines this package is measured
on cost from 0.09 to 1.2 s per 128 MiB, against 0.01-0.08 s to widen into a kept buffer.
Per thread, since Dask workers run tensors side by side.
"""
import threading

import numpy as np

__all__ = ["chunk_buffers", "release_chunk_buffers", "widen_rows"]

_KEPT = threading.local()


def chunk_buffers(count, rows, n):
    """``count`` float32 ``(rows, n)`` buffers kept by this thread (their contents are
    whatever the last run left)."""
    size = rows * n
    kept = getattr(_KEPT, "buffers", None)
    if kept is None or kept.shape[0] < count or kept.shape[1] < size:
        kept = _KEPT.buffers = np.empty((count, size), np.float32)
    return tuple(kept[k, :size].reshape(rows, n) for k in range(count))


def release_chunk_buffers():
    """Give back this thread's kept buffers (the exports do when they return; a Dask
    worker's threads keep theirs for the next tensors)."""
    _KEPT.buffers = None


def widen_rows(raw, into):
    """``into[...] =`` the 2-D rows ``raw`` as float32, exactly: float32 copied, float16
    by table lookup, bfloat16 (its uint16 bits) shifted into the high half; ranges of
    rows on the kept thread pool (numpy's conversions run on one thread).  Returns
    ``into``."""
    from numba_quant._cpu.threads import ranges, run_ranges
    from numba_quant._cpu.widen import widen_bf16_rows, widen_f16_rows
    raw = np.asarray(raw)
    if raw.dtype == np.float16:
        widen_f16_rows(raw.view(np.uint16), into)
    elif raw.dtype == np.uint16:
        widen_bf16_rows(raw, into)
    else:
        run_ranges(_copy_rows, ranges(len(into), into.size), (raw, into))
    return into


def _copy_rows(raw, into, r0, r1):
    np.copyto(into[r0:r1], raw[r0:r1])      # numpy releases the GIL while it copies
