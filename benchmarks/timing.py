"""Timing for the scripts of ``benchmarks/``: repeats, warm-up, statistics, yardsticks.

One definition of what the scripts' "median of 5" or "best of 7" means:

* :func:`interleave` times several callables taking turns within every repeat (so their
  ratios come from the same moments of a noisy machine), after one untimed warm-up call
  each (compilation, first touch of the outputs); it keeps every repeat's wall time and,
  on request, the CPU time of the process (all threads) over the same calls.
* :func:`time_one` is the same for a single callable.
* :func:`measure` is ``run.py``'s statistic: each callable is called often enough per
  repeat for a repeat to last about ``target`` seconds.
* The yardsticks: :func:`bandwidth_probe` (``BW`` in every table: a parallel read-only
  sum over the input's bytes, vectorised, the practical limit of a pass that reads the
  input once) and :func:`copy_probe` (a parallel copy into an array written before: the
  practical limit of a pass that reads the input and writes an output of the same size);
  :func:`traffic_probe` for an output of another size (a read pass, then a write pass).
* :func:`wait_quiet` and :func:`involuntary_switches` tell how busy the machine was.

The module imports numba, not numba_quant: a script chooses which numba_quant it imports
(this checkout, or one on ``PYTHONPATH``) and where Numba's cache is before importing it.
"""
import gc
import os
import resource
import statistics
import time

import numpy as np
from numba import njit, prange

# ----------------------------------------------------------------------------------------
# Repeats


class Times:
    """The repeats of one callable: ``wall`` (seconds per call, one entry per repeat),
    ``cpu`` (process CPU seconds per call of the same repeats, all threads; empty unless
    asked for) and ``number`` (calls per repeat)."""

    __slots__ = ("wall", "cpu", "number")

    def __init__(self, number=1):
        self.wall = []
        self.cpu = []
        self.number = number

    @property
    def median(self):
        return statistics.median(self.wall)

    @property
    def min(self):
        return min(self.wall)

    def stat(self, name):
        """``"median"`` or ``"min"`` of the wall times."""
        return STATS[name](self.wall)

    def cpu_stat(self, name):
        """``"median"`` or ``"min"`` of the CPU times."""
        return STATS[name](self.cpu)

    @property
    def cpu_of_fastest(self):
        """The CPU time of the repeat with the least wall time."""
        return self.cpu[self.wall.index(min(self.wall))]


STATS = {"median": statistics.median, "min": min}


def per_call(fn, number=1):
    """Wall seconds per call of ``number`` calls of ``fn`` in a row."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _repeat(fn, number, times, cpu, release):
    # Results are dropped as they come (as a plain loop would), unless ``release`` takes
    # the last one: a result kept alive through the next call would change what the
    # allocator can reuse.
    c = time.process_time() if cpu else 0.0
    start = time.perf_counter()
    if release is None:
        for _ in range(number):
            fn()
    else:
        for _ in range(number):
            result = fn()
    wall = time.perf_counter() - start
    if cpu:
        times.cpu.append((time.process_time() - c) / number)
    times.wall.append(wall / number)
    if release is not None:
        release(result)


def interleave(impls, repeats, *, number=1, warmup=True, cpu=False, release=None,
               gc_off=False):
    """Time the callables of ``impls`` (name -> callable), taking turns in each repeat.

    Parameters
    ----------
    impls : dict
        Name -> callable without arguments.  The order is the order of the turns.
    repeats : int
        Repeats; each makes one entry of every callable's :class:`Times`.
    number : int or dict
        Calls per repeat (a dict: per name); the entry is the time per call.
    warmup : bool
        Call each callable once, untimed, before the repeats (all of them, in order).
    cpu : bool
        Also record the process CPU time (``time.process_time``, all threads).
    release : callable, optional
        Called untimed with the result of the last call of each repeat (and of the
        warm-up), e.g. to drop a result kept elsewhere.
    gc_off : bool
        Keep Python's garbage collector off during the repeats.

    Returns
    -------
    dict
        Name -> :class:`Times`.
    """
    counts = {name: number[name] if isinstance(number, dict) else number for name in impls}
    if warmup:
        for fn in impls.values():
            if release is None:
                fn()
            else:
                release(fn())
    times = {name: Times(counts[name]) for name in impls}
    enabled = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        for _ in range(repeats):
            for name, fn in impls.items():
                _repeat(fn, counts[name], times[name], cpu, release)
    finally:
        if enabled:
            gc.enable()
    return times


def time_one(fn, repeats, **options):
    """:func:`interleave` of the single callable ``fn``: its :class:`Times`."""
    return interleave({"call": fn}, repeats, **options)["call"]


def calls_for(fn, target):
    """Calls of ``fn`` per repeat for a repeat to last about ``target`` seconds.

    Calls ``fn`` first (compilation, caches), then estimates one call's time from the
    fastest of a few calls (robust to a preempted one), in loops for fast calls.
    """
    fn()
    once = per_call(fn)
    if once < 3 * target:
        once = min([once] + [per_call(fn) for _ in range(2)])
    if once < target / 10:
        once = min(per_call(fn, max(1, int(target / 10 / once))) for _ in range(3))
    if once >= target:
        return 1
    return int(min(100000, max(1, target / max(once, 1e-7))))


def measure(impls, repeats, target):
    """Seconds per call of each callable in ``impls`` (name -> callable or None).

    Each callable is warmed up and called ``number`` times per repeat (:func:`calls_for`
    ``target``); the callables take turns within every repeat, with the garbage
    collector off.  Returns ``({name: {"median", "min", "samples", "number"}},
    {name: error message})``: a callable that raises while warming up is left out and
    its error reported (its cell stays empty).
    """
    numbers, errors = {}, {}
    for name, fn in impls.items():
        if fn is None:
            continue
        try:
            numbers[name] = calls_for(fn, target)
        except Exception as exc:  # a failing implementation leaves its cell empty
            errors[name] = f"{type(exc).__name__}: {exc}"
    live = {name: impls[name] for name in numbers}
    times = interleave(live, repeats, number=numbers, warmup=False, gc_off=True)
    results = {name: {"median": t.median, "min": t.min, "samples": t.wall,
                      "number": t.number}
               for name, t in times.items()}
    return results, errors


# ----------------------------------------------------------------------------------------
# Yardsticks

@njit(parallel=True, fastmath=True)
def parallel_sum(a):
    """Sum of a 1-D array on all threads; ``fastmath`` lets the sum vectorise, so it runs
    at the speed of reading the bytes, not of a chain of dependent additions."""
    s = a.dtype.type(0)
    for i in prange(a.size):
        s += a[i]
    return s


@njit(parallel=True)
def parallel_copy(src, dst):
    """``dst[i] = src[i]`` for 1-D arrays of the same size, on all threads."""
    for i in prange(src.size):
        dst[i] = src[i]


@njit(parallel=True)
def parallel_fill(dst, value):
    """``dst[i] = value`` for a 1-D array, on all threads."""
    for i in prange(dst.size):
        dst[i] = value


def _flat(x):
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("the yardsticks need a contiguous array")
    return flat


def bandwidth_probe(x):
    """A callable reading the bytes of the contiguous array ``x`` once, in parallel
    (``BW``)."""
    flat = _flat(x)
    return lambda: parallel_sum(flat)


def copy_probe(src, dst):
    """A callable copying the contiguous array ``src`` into ``dst`` (same size), in
    parallel.  Write ``dst`` once before timing: a first write also pays page faults."""
    a, b = _flat(src), _flat(dst)
    return lambda: parallel_copy(a, b)


def traffic_probe(src, dst):
    """A callable reading the contiguous array ``src`` once and writing ``dst`` once, two
    parallel passes: the practical limit of a pass that reads ``src`` and writes ``dst``
    of another size (a quantizer's floats and bytes).  Write ``dst`` once before timing."""
    a, b = _flat(src), _flat(dst)
    zero = b.dtype.type(0)
    return lambda: (parallel_sum(a), parallel_fill(b, zero))


# ----------------------------------------------------------------------------------------
# How busy the machine is

def _cpu_counters():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def cpu_busy(window=0.25):
    """Fraction of all cores that other processes kept busy over ``window`` seconds."""
    try:
        own0 = sum(os.times()[:2])
        total0, idle0 = _cpu_counters()
        time.sleep(window)
        total1, idle1 = _cpu_counters()
        own1 = sum(os.times()[:2])
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = max(1, total1 - total0)
    others = (total - (idle1 - idle0)) - (own1 - own0) * ticks
    return min(1.0, max(0.0, others / total))


def wait_quiet(max_wait, threshold=0.1):
    """Wait up to ``max_wait`` seconds for other processes to leave the CPUs idle.

    Parallel regions use every core, so anything else running makes a thread wait for
    a time slice (milliseconds).  Returns the last busy fraction seen (None: unknown).
    """
    deadline = time.perf_counter() + max_wait
    while True:
        busy = cpu_busy()
        if busy is None or busy < threshold or time.perf_counter() >= deadline:
            return busy
        time.sleep(0.25)


def involuntary_switches():
    """This process's involuntary context switches so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
