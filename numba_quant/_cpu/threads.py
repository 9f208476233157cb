"""Parallel CPU work: when to run in parallel, into how many tasks, and one parallel
call at a time.

Numba's fallback threading layer (workqueue, used when neither OpenMP nor TBB is
available) aborts the process when two Python threads enter parallel code at once.  So
every ``parallel=True`` kernel of the package is made by :func:`parallel_njit`, which
returns it as a :class:`Guarded` callable that holds :data:`LOCK` around each call: the
guard is part of the kernel, and no call site can forget it.  Parallel kernels would
share the same cores anyway; serial kernels (also the GIL-free ones that run on the
kept thread pool) take no lock.
"""
import concurrent.futures
import threading
from contextlib import nullcontext

import numba

from numba_quant._host import cache as _cache  # noqa: F401  (cache keys cover every kernel source)
from numba_quant._host import tuning as _tuning
from numba_quant._cpu.signatures import Kernel

# Held around every call of a parallel kernel.  Re-entrant, so that a caller may also
# hold it around several calls (one_at_a_time).
LOCK = threading.RLock()


class Guarded:
    """A parallel kernel that runs under :data:`LOCK`: ``guarded(*args)`` calls
    ``kernel(*args)`` holding the lock.  Made only by :func:`parallel_njit`.

    ``kernel`` is what is called (the Numba dispatcher, or a
    :class:`~numba_quant._cpu.signatures.Kernel` around it), ``dispatcher`` the Numba
    dispatcher, ``py_func`` the Python function, as on a dispatcher.
    """

    __slots__ = ("kernel", "dispatcher", "py_func", "__name__")

    def __init__(self, kernel, dispatcher):
        self.kernel = kernel
        self.dispatcher = dispatcher
        self.py_func = dispatcher.py_func
        self.__name__ = dispatcher.py_func.__name__

    def __call__(self, *args):
        with LOCK:
            return self.kernel(*args)

    def __repr__(self):
        return f"<numba_quant parallel kernel {self.__name__}>"


def parallel_njit(joint=None, **options):
    """The package's one way to make a parallel kernel: a decorator compiling a function
    with ``numba.njit(parallel=True, **options)`` and returning it as a
    :class:`Guarded` callable.

    ``joint``: when given (a tuple, possibly empty), the dispatcher is called through a
    :class:`~numba_quant._cpu.signatures.Kernel` with that ``joint`` (one compiled
    signature per layout class).
    """

    def make(function):
        dispatcher = numba.njit(parallel=True, **options)(function)
        kernel = dispatcher if joint is None else Kernel(dispatcher, joint)
        return Guarded(kernel, dispatcher)

    return make

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


def split(n_items, parts):
    """``n_items`` split into at most ``parts`` near-equal ranges ``(start, stop)``."""
    edges = [n_items * k // parts for k in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def ranges(n_items, n_elements):
    """``n_items`` split into ranges ``(start, stop)``: one where :func:`tasks` runs
    serially (or for a single item), else at most :func:`tasks`' count."""
    parallel, most = tasks(n_elements)
    if not parallel or n_items < 2:
        return [(0, n_items)]
    return split(n_items, min(n_items, most))


def run_ranges(kernel, parts, args_before, args_after=(), workers=None):
    """``kernel(*args_before, start, stop, *args_after)`` for each range of ``parts`` (a
    serial, GIL-free kernel): one range on this thread, several on the kept pool of
    ``workers`` threads (default: Numba's thread count); the list of their results, in
    order."""
    if len(parts) <= 1:
        return [kernel(*args_before, a, b, *args_after) for a, b in parts]
    executor = pool(workers or numba.get_num_threads())
    futures = [executor.submit(kernel, *args_before, a, b, *args_after) for a, b in parts]
    return [f.result() for f in futures]


def over_ranges(kernel, n_items, n_elements, args_before, args_after=()):
    """:func:`run_ranges` over :func:`ranges` of ``n_items`` items of ``n_elements``
    elements in all."""
    return run_ranges(kernel, ranges(n_items, n_elements), args_before, args_after)


def one_at_a_time(parallel):
    """:data:`LOCK` when ``parallel``: for a caller that keeps several parallel calls
    together (each parallel kernel takes the lock itself; see :class:`Guarded`)."""
    return LOCK if parallel else nullcontext()


def tasks(size):
    """``(parallel, most)`` for work on ``size`` elements: whether to
    run in parallel (from PARALLEL_THRESHOLD elements, on more than one thread), and how
    many tasks at most (a few per thread, each of at least MIN_TASK_ELEMENTS elements
    where there are enough)."""
    parallel = size >= _tuning.PARALLEL_THRESHOLD and numba.get_num_threads() > 1
    if not parallel:
        return False, 1
    most = _tuning.TASKS_PER_THREAD * numba.get_num_threads()
    return True, max(1, min(most, size // _tuning.MIN_TASK_ELEMENTS))


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
