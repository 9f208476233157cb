"""Parallel CPU work: when to run in parallel, into how many tasks, and one parallel
call at a time.

Numba's fallback threading layer (workqueue, used when neither OpenMP nor TBB is
available) aborts the process when two Python threads enter parallel code at once, so
parallel kernels run one call at a time (:func:`one_at_a_time`); they would share the
same cores anyway.
"""
import concurrent.futures
import threading
from contextlib import nullcontext

import numba

from numba_quant._host import tuning as _tuning

LOCK = threading.Lock()

# The package's kept thread pool, for GIL-free serial kernels on ranges of work (no
# threads started per call).
_POOL = None
_POOL_LOCK = threading.Lock()


def pool(threads):
    """The kept thread pool, with at least ``threads`` workers."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < threads:
            _POOL = concurrent.futures.ThreadPoolExecutor(threads,
                                                          thread_name_prefix="numba_quant")
        return _POOL


def one_at_a_time(parallel):
    """The guard around a kernel call: :data:`LOCK` when it runs in parallel."""
    return LOCK if parallel else nullcontext()


def tasks(x3):
    """``(parallel, most)``: whether to run in parallel, and how many tasks at most."""
    parallel = x3.size >= _tuning.PARALLEL_THRESHOLD and numba.get_num_threads() > 1
    if not parallel:
        return False, 1
    most = _tuning.TASKS_PER_THREAD * numba.get_num_threads()
    return True, max(1, min(most, x3.size // _tuning.MIN_TASK_ELEMENTS))


class one_thread:
    """Run the compiled kernels called inside on this thread only (numba's thread count
    is per calling thread): for the chunks of a ChunkedInput, converted one after the
    other by numpy, where starting a parallel region per chunk costs more than it saves
    (milliseconds each when the other cores are busy)."""

    def __enter__(self):
        self.threads = numba.get_num_threads()
        if self.threads > 1:
            numba.set_num_threads(1)

    def __exit__(self, *exc):
        if self.threads > 1:
            numba.set_num_threads(self.threads)
