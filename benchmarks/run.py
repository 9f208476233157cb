#!/usr/bin/env python
"""Benchmarks of numba_quant against numpy and PyTorch, and against the memory limit.

Usage::

    python benchmarks/run.py                 # full run (about 5-10 minutes on 2 cores)
    python benchmarks/run.py --quick         # short run: smaller sizes, fewer repeats
    python benchmarks/run.py --cases layer,fake --json results.json

Groups (``--cases``): ``layer`` (per-layer min_max_observer), ``channel`` (per-channel
min_max_observer), ``fake`` (fake_quantization), ``startup`` (import time and first-call
times with a cold and a warm Numba cache, each in a fresh subprocess) and ``overhead``
(the per-call cost on a 100-element array, broken down).  An item of ``--cases`` that is
not a group name selects the rows whose case name contains it (``--cases "C=64"``).

Every row times numba_quant, numpy, PyTorch (when importable) and ``BW``: a parallel,
read-only ``numba`` sum over the same bytes, the practical memory limit.  Times are
medians of repeats; the implementations of a row are interleaved within each repeat, so
ratios come from the same moments of a noisy machine.  Ratios ``other/nq`` above 1 mean
numba_quant is faster; ``nq/BW`` is numba_quant's time in units of the memory limit.

numba_quant is imported from this checkout (the folder above ``benchmarks/``).  Numba and
PyTorch use ``numba.get_num_threads()`` threads (``NUMBA_NUM_THREADS`` changes it).
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A fresh Numba cache unless --keep-cache: results must not depend on what earlier runs
# (tests, other scripts) left in numba_quant/__pycache__.  Set before numba is imported.
_FRESH_CACHE = None
if "--keep-cache" not in sys.argv and "--from-json" not in sys.argv:
    _FRESH_CACHE = tempfile.TemporaryDirectory(prefix="nq-bench-cache-")
    os.environ["NUMBA_CACHE_DIR"] = _FRESH_CACHE.name

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

import numba_quant as nq  # noqa: E402
from timing import (bandwidth_probe, involuntary_switches, measure,  # noqa: E402
                    parallel_sum, wait_quiet)

try:
    import torch
    import torch.ao.quantization as torch_quant
except ImportError:  # PyTorch is optional: its columns are left empty
    torch = None

GROUPS = ("layer", "channel", "fake", "startup", "overhead")
THREADS = numba.get_num_threads()
if torch is not None and torch.get_num_threads() != THREADS:
    # Only when they differ: calling it disturbs the OpenMP runtimes (torch's bundled
    # libgomp and the one Numba's omp layer loads), slowing later Numba parallel regions.
    torch.set_num_threads(THREADS)

QMIN, QMAX = -128, 127  # 8-bit symmetric codes (google formula, the default)


# ----------------------------------------------------------------------------------------
# Memory

def extra_memory(fn, nbytes):
    """Peak bytes numpy allocates during one call of ``fn`` beyond what it returns,
    over ``nbytes`` (the input's size): about 1 or more when the input is copied.

    numpy allocations (a copy of the input, outputs, partial results) are traced by
    tracemalloc; Numba's allocations inside compiled code are not.
    """
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    returned = sum(getattr(a, "nbytes", 0) for a in result)
    return max(0, peak - returned) / nbytes


# ----------------------------------------------------------------------------------------
# Reference implementations

def numpy_layer_qparams(x):
    """numpy's per-layer google symmetric 8-bit scale and zero point."""
    lo, hi = x.min(), x.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("non-finite input")
    amax = max(abs(lo), abs(hi))
    scale = np.array([amax / x.dtype.type(127)], x.dtype)
    return scale, np.zeros(1, x.dtype)


def numpy_channel_qparams(x, axis):
    others = tuple(k for k in range(x.ndim) if k != axis % x.ndim)
    lo, hi = x.min(axis=others), x.max(axis=others)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("non-finite input")
    scale = np.maximum(np.abs(lo), np.abs(hi)) / x.dtype.type(127)
    return scale, np.zeros_like(scale)


def numpy_fake(x, scale, axis, out=None):
    """np.clip(np.rint(x / s), lo, hi) * s, per layer (axis None) or per channel."""
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    if out is None:
        return np.clip(np.rint(x / scale), QMIN, QMAX) * scale
    np.divide(x, scale, out=out)
    np.rint(out, out=out)
    np.clip(out, QMIN, QMAX, out=out)
    np.multiply(out, scale, out=out)
    return out


def channel_shape(shape, axis):
    """(outer, channels, inner) of a C-contiguous array of ``shape`` along ``axis``."""
    axis %= len(shape)
    return (int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:])))


def torch_channel_aminmax(t, axis):
    """torch.aminmax over every axis but ``axis``, on views (no copies)."""
    outer, channels, inner = channel_shape(tuple(t.shape), axis)
    if outer == 1:
        t2 = t.reshape(channels, inner)
        return lambda: torch.aminmax(t2, dim=1)
    if inner == 1:
        t2 = t.reshape(outer, channels)
        return lambda: torch.aminmax(t2, dim=0)
    t3 = t.reshape(outer, channels, inner)  # no aminmax over two dims: amin + amax
    return lambda: (torch.amin(t3, dim=(0, 2)), torch.amax(t3, dim=(0, 2)))


def torch_observer(observer, t):
    def run():
        observer(t)
        return observer.calculate_qparams()
    return run


# ----------------------------------------------------------------------------------------
# Cases

def sizes_for(quick):
    return [10**k for k in range(2, 8 if quick else 9)]


class Data:
    """One random float32 buffer, sliced for every case (so at most one 1e8 array lives)."""

    def __init__(self, largest):
        self.base = np.random.default_rng(0).standard_normal(largest, dtype=np.float32)

    def take(self, n, shape=None):
        x = self.base[:n]
        return x if shape is None else x.reshape(shape)


def layer_cases(data, sizes, settings):
    for n in sizes:
        x = data.take(n)
        t = torch.from_numpy(x) if torch is not None else None
        impls = {
            "nq": lambda: nq.min_max_observer(x),
            "np min+max": lambda: (x.min(), x.max()),
            "np qparams": lambda: numpy_layer_qparams(x),
        }
        if torch is not None:
            impls["torch.aminmax"] = lambda: torch.aminmax(t)
            if n <= 10**6:
                observer = torch_quant.MinMaxObserver(dtype=torch.qint8,
                                                      qscheme=torch.per_tensor_symmetric)
                impls["torch observer"] = torch_observer(observer, t)
        impls["BW"] = bandwidth_probe(x)
        yield {"group": "layer", "case": "observer layer", "size": n, "shape": x.shape,
               "impls": impls}


def channel_specs(quick):
    """(name, shape, axis) of the per-channel cases; C is always the number of channels."""
    n7 = 10**6 if quick else 10**7
    largest = 10**7 if quick else 10**8
    # Channels first at the largest size, and rows of 4 (C = N/4 channels along axis 0).
    specs = [("C=64 ax0", (64, largest // 64), 0),
             (f"C={largest // 4} ax0", (largest // 4, 4), 0)]
    for axis in (0, 1, -1):
        specs.append((f"conv ax{axis}", (256, 128, 3, 3), axis))
    if not quick:  # conv-shaped at ~1e7 elements, where the data no longer fits in cache
        for axis in (0, 1, -1):
            specs.append((f"conv8x ax{axis}", (2048, 512, 3, 3), axis))
    for channels in (1, 4, 64, 1024, n7 // 4):
        specs.append((f"C={channels} ax-1", (n7 // channels, channels), -1))
        specs.append((f"C={channels} ax0", (channels, n7 // channels), 0))
    return specs


def channel_cases(data, quick, settings):
    conv = np.random.default_rng(1).standard_normal((256, 128, 3, 3), dtype=np.float32)
    for name, shape, axis in channel_specs(quick):
        x = conv if shape == conv.shape else data.take(int(np.prod(shape)), shape)
        t = torch.from_numpy(x) if torch is not None else None
        impls = {
            "nq": lambda x=x, axis=axis: nq.min_max_observer(
                x, per_layer_quantization=False, axis=axis),
            "numpy": lambda x=x, axis=axis: numpy_channel_qparams(x, axis),
        }
        if torch is not None:
            impls["torch.aminmax"] = torch_channel_aminmax(t, axis)
            observer = torch_quant.PerChannelMinMaxObserver(
                ch_axis=axis, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
            impls["torch observer"] = torch_observer(observer, t)
        impls["BW"] = bandwidth_probe(x)
        yield {"group": "channel", "case": f"observer {name}", "size": x.size,
               "shape": x.shape, "axis": axis, "impls": impls,
               "memory": lambda x=x, axis=axis: nq.min_max_observer(
                   x, per_layer_quantization=False, axis=axis)}
        if axis == 0 and shape[1:] == (4,):  # rows of 4 again, into kept arrays
            kept = (np.empty(x.shape[axis], x.dtype), np.empty(x.shape[axis], x.dtype))
            call = lambda x=x, axis=axis, kept=kept: nq.min_max_observer(  # noqa: E731
                x, per_layer_quantization=False, axis=axis, out=kept)
            yield {"group": "channel", "case": f"observer {name} out=", "size": x.size,
                   "shape": x.shape, "axis": axis,
                   "impls": {"nq": call, "BW": impls["BW"]},
                   "memory": call}


def fake_specs(quick):
    sizes = [10**6, 10**7] if quick else [10**6, 10**7, 10**8]
    specs = []
    for n in sizes:
        specs.append(("layer", (n,), None))
        specs.append(("C=64 ax0", (64, n // 64), 0))
        if n >= 10**7:  # channels last
            specs.append(("C=64 ax-1", (n // 64, 64), -1))
    return specs


def fake_cases(data, quick, settings):
    for name, shape, axis in fake_specs(quick):
        x = data.take(int(np.prod(shape)), shape)
        if axis is None:
            scale, zero_point = nq.min_max_observer(x)
        else:
            scale, zero_point = nq.min_max_observer(x, per_layer_quantization=False,
                                                    axis=axis)
        out = np.empty_like(x)
        t = torch.from_numpy(x) if torch is not None else None
        if torch is None:
            torch_fake = None
        elif axis is None:
            s = float(scale[0])
            torch_fake = lambda t=t, s=s: torch.fake_quantize_per_tensor_affine(
                t, s, 0, QMIN, QMAX)
        else:
            ts = torch.from_numpy(scale.copy())
            tz = torch.zeros(scale.size, dtype=torch.int32)
            torch_fake = lambda t=t, ts=ts, tz=tz, axis=axis: \
                torch.fake_quantize_per_channel_affine(t, ts, tz, axis % t.ndim, QMIN, QMAX)
        kw = {} if axis is None else {"axis": axis}
        # Rows with out= (preallocated) and without; torch has no out= and is timed once.
        for with_out in (True, False):
            impls = {
                "nq": (lambda x=x, s=scale, z=zero_point, o=out, kw=kw:
                       nq.fake_quantization(x, s, z, out=o, **kw)) if with_out else
                      (lambda x=x, s=scale, z=zero_point, kw=kw:
                       nq.fake_quantization(x, s, z, **kw)),
                "numpy": (lambda x=x, s=scale, o=out, a=axis: numpy_fake(x, s, a, o))
                if with_out else (lambda x=x, s=scale, a=axis: numpy_fake(x, s, a)),
                "torch": torch_fake if with_out else None,
                "BW": bandwidth_probe(x),
            }
            yield {"group": "fake",
                   "case": f"fake {name}" + (" out=" if with_out else ""),
                   "size": x.size, "shape": x.shape, "axis": axis, "impls": impls,
                   "reuse_torch": not with_out}
        del out


# ----------------------------------------------------------------------------------------
# Startup: import time, cold and warm first calls (fresh subprocesses)

_FIRST_CALL = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import numba_quant as nq
    t_import = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    small = rng.standard_normal(100, dtype=np.float32)
    large = rng.standard_normal(1 << 20, dtype=np.float32)
    def args(x):
        kind = sys.argv[1]
        s = np.array([0.03], np.float32)
        z = np.array([0.0], np.float32)
        if kind == "min_max_observer (layer)":
            return lambda: nq.min_max_observer(x)
        if kind == "min_max_observer (channel)":
            x2 = x.reshape(4, -1)
            return lambda: nq.min_max_observer(x2, per_layer_quantization=False)
        if kind == "fake_quantization":
            return lambda: nq.fake_quantization(x, s, z)
        if kind == "quantization":
            return lambda: nq.quantization(x, s, z)
        if kind == "quantize":
            return lambda: nq.quantize(x, s, z)
        if kind == "dequantize":
            q = rng.integers(-128, 128, x.size).astype(np.int8)
            return lambda: nq.dequantize(q, s, z)
        if kind == "moving_average_min_max_observer":
            mx = np.zeros(1, np.float32)
            mn = np.zeros(1, np.float32)
            return lambda: nq.moving_average_min_max_observer(x, 1, mx, mn, True, 10)
        raise SystemExit("unknown " + kind)
    times = {"import": t_import}
    for label, x in (("small", small), ("large", large)):
        fn = args(x)
        t0 = time.perf_counter()
        fn()
        times[label] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn()
        times[label + " again"] = time.perf_counter() - t0
    print(json.dumps(times))
""")

FUNCTIONS = ("min_max_observer (layer)", "min_max_observer (channel)", "fake_quantization",
             "quantization", "quantize", "dequantize", "moving_average_min_max_observer")


def _subprocess(args, env=None):
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    full_env.update(env or {})
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=full_env, cwd=str(ROOT))
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else
                           f"exit code {done.returncode}")
    return done


def import_times(repeats, max_wait):
    """Wall time of ``import numba_quant`` and of ``import numba`` alone (median)."""
    wait_quiet(max_wait)
    code = ("import time; t = time.perf_counter(); import {}; "
            "print(time.perf_counter() - t)")
    results = {}
    for module in ("numba_quant", "numba", "numpy"):
        _subprocess(["-c", code.format(module)])  # writes .pyc files if needed
        samples = [float(_subprocess(["-c", code.format(module)]).stdout)
                   for _ in range(repeats)]
        results[module] = {"median": statistics.median(samples), "samples": samples}
    # -X importtime: the cumulative time attributed to the package's own modules.
    lines = _subprocess(["-X", "importtime", "-c", "import numba_quant"]).stderr.splitlines()
    own = {}
    for line in lines:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2].startswith("numba_quant"):
            try:
                own[parts[2]] = {"self_us": int(parts[0].split(":")[-1]),
                                 "cumulative_us": int(parts[1])}
            except ValueError:
                pass
    results["importtime"] = own
    return results


def first_call_times(functions, max_wait):
    """Per function: first-call seconds with a cold cache, then a warm one (same folder)."""
    results = {}
    for function in functions:
        wait_quiet(max_wait)
        with tempfile.TemporaryDirectory(prefix="nq-cache-") as cache:
            row = {}
            for state in ("cold", "warm"):
                try:
                    done = _subprocess(["-c", _FIRST_CALL, function],
                                       env={"NUMBA_CACHE_DIR": cache})
                    row[state] = json.loads(done.stdout.strip().splitlines()[-1])
                except Exception as exc:
                    row[state] = {"error": str(exc)}
            results[function] = row
    return results


# ----------------------------------------------------------------------------------------
# The per-call overhead on tiny inputs

def overhead(repeats):
    """Per-call time of min_max_observer on 100 elements against numpy, and a profile."""
    import cProfile
    import pstats

    x = np.random.default_rng(2).standard_normal(100, dtype=np.float32)
    observer = nq.MinMaxObserver()

    @njit
    def _noop(a):
        return a.size

    impls = {
        "nq.min_max_observer": lambda: nq.min_max_observer(x),
        "nq.MinMaxObserver()": lambda: observer(x),
        "np x.min(), x.max()": lambda: (x.min(), x.max()),
        "np qparams": lambda: numpy_layer_qparams(x),
        "njit call, array arg": lambda: _noop(x),
    }
    timed, errors = measure(impls, repeats, 0.05)
    calls = 20000
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        nq.min_max_observer(x)
    profile.disable()
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, function), (cc, nc, tt, ct, _) in stats.stats.items():
        where = (f"{Path(filename).name}:{line}({function})" if line else function)
        rows.append({"function": where, "calls_per_call": nc / calls,
                     "tottime_us": tt / calls * 1e6, "cumtime_us": ct / calls * 1e6})
    rows.sort(key=lambda r: -r["tottime_us"])
    return {"times": {k: v["median"] for k, v in timed.items()}, "errors": errors,
            "profile": rows[:15], "profiled_calls": calls}


# ----------------------------------------------------------------------------------------
# Output

def fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            value = seconds / scale
            break
    else:
        unit, value = "us", seconds / 1e-6
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def fmt_ratio(value):
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_size(n):
    exponent = int(round(np.log10(n))) if n > 0 else 0
    return f"1e{exponent}" if 10**exponent == n else f"{n:.2g}"


def print_table(title, rows, others):
    """One section: case, size, nq, the others, their ratios to nq, BW and nq/BW."""
    header = (["case", "size", "nq"] + others + ["BW"] +
              [f"{short(o)}/nq" for o in others] + ["nq/BW"])
    lines = []
    for row in rows:
        t = row["times"]
        nqt = t.get("nq")
        cells = [row["case"], fmt_size(row["size"]), fmt_time(nqt)]
        cells += [fmt_time(t.get(o)) for o in others]
        cells += [fmt_time(t.get("BW"))]
        cells += [fmt_ratio(t[o] / nqt if t.get(o) and nqt else None) for o in others]
        cells += [fmt_ratio(nqt / t["BW"] if nqt and t.get("BW") else None)]
        if "extra_memory" in row:
            cells.append(f"{row['extra_memory']:.2f}")
        busy = row.get("busy_before")
        cells.append("-" if busy is None else f"{busy:.0%}")
        cells.append(str(row.get("switches", "-")))
        lines.append(cells)
    if rows and "extra_memory" in rows[0]:
        header.append("mem")
    header += ["busy", "ivcsw"]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    out = [f"\n## {title}", ""]
    for cells in [header] + lines:
        out.append("  ".join(str(c).ljust(w) if k == 0 else str(c).rjust(w)
                             for k, (c, w) in enumerate(zip(cells, widths))))
    print("\n".join(out), flush=True)


def short(name):
    return {"np min+max": "mm", "np qparams": "np", "numpy": "np", "torch.aminmax": "ta",
            "torch observer": "tobs", "torch": "torch"}.get(name, name)


def machine():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numba": numba.__version__, "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None,
            "threads": THREADS,
            "torch_threads": torch.get_num_threads() if torch is not None else None}
    try:
        parallel_sum(np.ones(10, np.float32))
        info["threading_layer"] = numba.threading_layer()
    except Exception:
        info["threading_layer"] = None
    return info


# ----------------------------------------------------------------------------------------

SECTIONS = (
    ("layer", "Per-layer min_max_observer (float32)",
     ["np min+max", "np qparams", "torch.aminmax", "torch observer"]),
    ("channel", "Per-channel min_max_observer (float32); mem = peak numpy allocation during "
     "the call beyond the returned arrays / input bytes (>= 1: a copy)",
     ["numpy", "torch.aminmax", "torch observer"]),
    ("fake", "fake_quantization (float32, 8-bit symmetric; torch has no out= and is timed "
     "once per size)", ["numpy", "torch"]),
)
STAT_KEYS = {"median": "medians", "min": "minima"}


def print_header(info, results):
    print(f"# numba_quant {results.get('version')} benchmarks "
          f"({'quick' if results['quick'] else 'full'})")
    print(f"cpu: {info['cpu']}, {info['cores']} cores; python {info['python']}, "
          f"numba {info['numba']}, numpy {info['numpy']}, torch {info['torch']}")
    print(f"threads: numba {info['threads']} ({info['threading_layer']} layer), "
          f"torch {info['torch_threads']}; {results['stat']} of {results['repeats']} repeats; "
          f"load average at start {results.get('load_average', float('nan')):.2f}; "
          f"numba cache: {'fresh' if results.get('fresh_cache') else 'kept'}")
    print("times per call; X/nq > 1: numba_quant is faster than X; nq/BW: numba_quant "
          "time / parallel read-only sum of the same bytes;\nbusy: CPU use by others just "
          "before the row; ivcsw: involuntary context switches during it (noise)")


def print_section(group, rows):
    for name, title, others in SECTIONS:
        if name == group and rows:
            print_table(title, rows, [o for o in others if any(o in r["times"] for r in rows)])


def print_startup(startup):
    imp = startup["import"]
    print("\n## Startup (fresh subprocesses; NUMBA_CACHE_DIR = a new temporary folder "
          "per function)\n")
    print(f"import numba_quant: {imp['numba_quant']['median']:.3f} s "
          f"(import numba alone: {imp['numba']['median']:.3f} s, numpy alone: "
          f"{imp['numpy']['median']:.3f} s)")
    own = imp["importtime"].get("numba_quant")
    if own:
        print(f"-X importtime cumulative for numba_quant: {own['cumulative_us'] / 1e6:.3f} s")
    print("\nfirst call, seconds (import: import numba_quant in that process; small: "
          "100 elements, serial kernels;\nlarge: 2**20 elements, parallel kernels, "
          "called after small; steady: the second call on 100 elements)")
    header = ["function", "import", "cold small", "cold large", "warm import",
              "warm small", "warm large", "steady small"]
    table = []
    for function, row in startup["first_call"].items():
        cells = [function]
        for state, label in (("cold", "import"), ("cold", "small"), ("cold", "large"),
                             ("warm", "import"), ("warm", "small"), ("warm", "large"),
                             ("warm", "small again")):
            value = row[state].get(label)
            cells.append("error" if value is None else
                         f"{value:.3f}" if label != "small again" else fmt_time(value))
        table.append(cells)
        for state in ("cold", "warm"):
            if "error" in row[state]:
                print(f"  ! {function} {state}: {row[state]['error']}")
    widths = [max(len(c) for c in col) for col in zip(header, *table)]
    for cells in [header] + table:
        print("  ".join(c.ljust(w) if k == 0 else c.rjust(w)
                        for k, (c, w) in enumerate(zip(cells, widths))))


def print_overhead(result):
    print("\n## Per-call overhead, 100 float32 elements\n")
    for name, value in result["times"].items():
        print(f"{name:24s} {value * 1e6:7.2f} us")
    print(f"\nprofile of min_max_observer (cProfile, {result['profiled_calls']} calls; "
          "profiling inflates times), per call:")
    print(f"{'tottime us':>10} {'cumtime us':>10} {'calls':>6}  function")
    for r in result["profile"]:
        print(f"{r['tottime_us']:10.2f} {r['cumtime_us']:10.2f} "
              f"{r['calls_per_call']:6.1f}  {r['function']}")


def render(results):
    """Print a saved run again (``--from-json``), with the statistic in results["stat"]."""
    print_header(results["machine"], results)
    for row in results["rows"]:
        row["times"] = row[STAT_KEYS[results["stat"]]]
    for group, _, _ in SECTIONS:
        print_section(group, [r for r in results["rows"] if r["group"] == group])
    if results.get("startup"):
        print_startup(results["startup"])
    if results.get("overhead"):
        print_overhead(results["overhead"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short run: sizes up to 1e7 (1e6 per channel), fewer repeats")
    parser.add_argument("--cases", default=",".join(GROUPS),
                        help="comma-separated groups (%s) or substrings of case names"
                        % ", ".join(GROUPS))
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    parser.add_argument("--repeats", type=int, help="repeats per measurement")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="statistic of the repeats shown and compared (default median)")
    parser.add_argument("--max-wait", type=float, default=None,
                        help="seconds to wait before each row for other processes to "
                        "leave the CPUs idle (default 5, quick 1; 0: do not wait)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="use the usual Numba cache (default: a fresh temporary one, so "
                        "nothing compiled before the run is reused)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: print the tables of a run saved with --json "
                        "(with --stat to choose median or min)")
    args = parser.parse_args(argv)

    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        results["stat"] = args.stat
        render(results)
        return

    selected = [c.strip() for c in args.cases.split(",") if c.strip()]
    groups = {g for g in GROUPS if g in selected}
    patterns = [c for c in selected if c not in GROUPS]
    if patterns:
        groups |= {"layer", "channel", "fake"}
    repeats = args.repeats or (3 if args.quick else 7)
    if args.max_wait is None:
        args.max_wait = 1.0 if args.quick else 5.0
    target = 0.01 if args.quick else 0.03

    def wanted(case):
        return not patterns or any(p in case["case"] for p in patterns)

    info = machine()
    started = time.perf_counter()
    results = {"machine": info, "version": nq.__version__,
               "command": " ".join([Path(sys.executable).name] + sys.argv),
               "quick": args.quick, "repeats": repeats, "stat": args.stat,
               "load_average": os.getloadavg()[0], "fresh_cache": _FRESH_CACHE is not None,
               "rows": []}
    print_header(info, results)
    largest = 10**7 if args.quick else 10**8
    data = Data(largest) if groups & {"layer", "channel", "fake"} else None
    generators = {
        "layer": lambda: layer_cases(data, sizes_for(args.quick), None),
        "channel": lambda: channel_cases(data, args.quick, None),
        "fake": lambda: fake_cases(data, args.quick, None),
    }
    for group, _, _ in SECTIONS:
        if group not in groups:
            continue
        rows = []
        last_torch = None
        for case in generators[group]():
            if not wanted(case):
                continue
            impls = case.pop("impls")
            memory = case.pop("memory", None)
            reuse = case.pop("reuse_torch", False)
            busy = wait_quiet(args.max_wait) if args.max_wait > 0 else None
            switches = involuntary_switches()
            timed, errors = measure(impls, repeats, target)
            switches = involuntary_switches() - switches
            row = dict(case, shape=list(case["shape"]), busy_before=busy, switches=switches,
                       medians={k: v["median"] for k, v in timed.items()},
                       minima={k: v["min"] for k, v in timed.items()},
                       samples={k: v["samples"] for k, v in timed.items()},
                       numbers={k: v["number"] for k, v in timed.items()}, errors=errors)
            if reuse and last_torch is not None:  # torch has no out=: timed once per size
                row["medians"]["torch"], row["minima"]["torch"] = last_torch
            if group == "fake" and "torch" in timed:
                last_torch = (row["medians"]["torch"], row["minima"]["torch"])
            row["times"] = row[STAT_KEYS[args.stat]]
            if memory is not None:
                row["extra_memory"] = extra_memory(memory, case["size"] * 4)
            for name, message in errors.items():
                print(f"  ! {case['case']} {case['size']}: {name} failed: {message}")
            rows.append(row)
            del impls, memory
            gc.collect()
        print_section(group, rows)
        results["rows"] += rows
    if data is not None:
        del data, generators
        gc.collect()

    if "startup" in groups:
        functions = FUNCTIONS[:1] + FUNCTIONS[2:3] if args.quick else FUNCTIONS
        results["startup"] = {"import": import_times(1 if args.quick else 3, args.max_wait),
                              "first_call": first_call_times(functions, args.max_wait)}
        print_startup(results["startup"])

    if "overhead" in groups:
        wait_quiet(args.max_wait)
        results["overhead"] = overhead(repeats)
        print_overhead(results["overhead"])

    elapsed = time.perf_counter() - started
    results["elapsed_s"] = elapsed
    print(f"\ntotal time {elapsed:.0f} s")
    if args.json:
        for row in results["rows"]:
            row.pop("times", None)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"raw numbers written to {args.json}")


if __name__ == "__main__":
    main()
