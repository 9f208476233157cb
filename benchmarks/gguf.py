#!/usr/bin/env python
"""GGUF quantization (numba_quant.gguf) against ggml's own C library, on the CPU.

Usage::

    NUMBA_NUM_THREADS=2 python benchmarks/gguf.py                  # every type, (4096, 4096)
    NUMBA_NUM_THREADS=2 python benchmarks/gguf.py Q4_0 IQ4_XS --rows 1024
    NUMBA_NUM_THREADS=2 python benchmarks/gguf.py --dequantize
    python benchmarks/gguf.py --compile                # first-call compile time per type
    python benchmarks/gguf.py --gpu Q4_K Q8_0          # the CUDA kernels, on a GPU

A float32 weight of normal values (and a log-normal importance matrix for the types that
use one).  ggml's C is ``ggml_quantize_chunk`` from ``libggml-base.so`` of the PyPI
package ``libggml-python==0.20.2.post1`` (found in /work/venv-gguf, or ``GGML_BASE_LIB``),
called through ctypes with the rows split over the same number of threads as Numba's
(as llama-quantize splits a tensor); ctypes releases the GIL during the calls.  ``mem`` is
the memory limit of each operation: a parallel read of what it reads and a parallel
write of what it writes (``timing.traffic_probe``: the floats and the bytes for
quantize, the bytes and the floats for dequantize), and ``ours/mem`` numba_quant's time
in its units (the issue's targets: at most 2 for the single-pass types and for
dequantize).  Best of ``--repeats``
runs, the implementations interleaved; ``first`` is numba_quant's first call in a fresh
Numba cache (compilation included); ``same`` says whether the bytes are equal.  Both
sides write into an output buffer they keep (numba_quant through ``out=``).
``--compile``: for each type, a fresh process with an empty Numba cache times its first
quantize (with an importance matrix where the type uses one) and dequantize of one row,
then a second process the same calls served from that cache.
``--gpu``: numba_quant on a Numba device array (kernels compiled by a first call on two
rows, each timing ended by ``cuda.synchronize``) against ggml's C on all of Numba's CPU
threads; ``BW`` is then a device-to-device copy of the input's bytes, and ``same``
compares the GPU's bytes with the C's.
"""
import argparse
import ctypes
import glob
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402,F401  (fresh Numba cache, numba_quant from this checkout)
from timing import traffic_probe  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

from numba_quant import gguf  # noqa: E402

IDS = {"F16": 1, "BF16": 30, "Q8_0": 8, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7,
       "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ4_NL": 20,
       "IQ4_XS": 23, "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39}
USES_IMATRIX = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                "IQ4_NL", "IQ4_XS")


class _Traits(ctypes.Structure):
    # struct ggml_type_traits of ggml 0.20 (ggml.h), up to to_float
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p)]


def _ggml():
    path = os.environ.get("GGML_BASE_LIB") or next(iter(sorted(glob.glob(
        "/work/venv-gguf/lib/python3*/site-packages/libggml/lib64/libggml-base.so"))), None)
    if path is None:
        sys.exit("libggml-base.so not found: pip install libggml-python==0.20.2.post1 into "
                 "/work/venv-gguf, or set GGML_BASE_LIB")
    lib = ctypes.CDLL(path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(_Traits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    return lib


def c_quantize(lib, pool, threads, name, x, qw, out):
    """ggml_quantize_chunk over ``threads`` bands of rows at once."""
    rows, n = x.shape
    qp = None if qw is None else qw.ctypes.data
    bands = [(rows * k // threads, rows * (k + 1) // threads) for k in range(threads)]

    def band(r):
        r0, r1 = r
        lib.ggml_quantize_chunk(IDS[name], x[r0:r1].ctypes.data, out[r0:r1].ctypes.data, 0,
                                r1 - r0, n, qp)
    list(pool.map(band, bands))


def c_dequantize(lib, pool, threads, name, data, out):
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
        lib.ggml_get_type_traits(IDS[name]).contents.to_float)
    rows, n = out.shape
    bands = [(rows * k // threads, rows * (k + 1) // threads) for k in range(threads)]

    def band(r):
        r0, r1 = r
        fn(data[r0:r1].ctypes.data, out[r0:r1].ctypes.data, (r1 - r0) * n)
    list(pool.map(band, bands))


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from numba_quant import gguf
t1 = time.perf_counter()
x = np.ones((1, 256), np.float32)
w = np.ones(256, np.float32) if {uses!r} else None
gguf.dequantize(gguf.quantize(x, {name!r}, imatrix=w), {name!r})
print(t1 - t0, time.perf_counter() - t1)
"""


def compile_times(names):
    root = str(Path(__file__).resolve().parents[1])
    print(f"{'type':7} {'import s':>8} {'compile s':>9} {'cached s':>8}")
    for name in names:
        code = _FIRST_CALL.format(name=name, uses=name in USES_IMATRIX)
        with tempfile.TemporaryDirectory(prefix="nq-gguf-cache-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=root)
            runs = [subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                                   capture_output=True, text=True, check=True)
                    for _ in range(2)]
        (imp, cold), (_, warm) = (map(float, r.stdout.split()) for r in runs)
        print(f"{name:7} {imp:8.2f} {cold:9.2f} {warm:8.2f}", flush=True)


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _cases(lib, names, label, yardstick):
    """Print the table's header (``label``: whose times, ``yardstick``: the limit they
    are divided by); yield each type with its
    importance-matrix settings (without, and with where the type uses one), ggml's
    tables initialised for it."""
    print(f"{'type':7} {'imatrix':7} {'first s':>8} {'C ms':>8} {label + ' ms':>8} "
          f"{label + '/C':>7} {label + '/' + yardstick:>8} same")
    for name in names:
        lib.ggml_quantize_init(IDS[name])
        yield name, ((False, True) if name in USES_IMATRIX else (False,))


def gpu_times(lib, pool, threads, names, x, qw, repeats):
    """The GPU rows of the table (see ``--gpu`` in the module's docstring)."""
    from numba import cuda
    dx, dw = cuda.to_device(x), cuda.to_device(qw)
    copy = cuda.device_array_like(dx)

    def synced(fn):
        def call():
            fn()
            cuda.synchronize()
        return call

    bw = best(synced(lambda: copy.copy_to_device(dx)), repeats)
    device = getattr(cuda, "get_current_device", lambda: None)()   # (not in the simulator)
    name = getattr(device, "name", b"simulator")
    name = name.decode() if isinstance(name, bytes) else name
    print(f"GPU {name}; BW (device-to-device copy of the input) {1e3 * bw:.2f} ms")
    for name, settings in _cases(lib, names, "GPU", "BW"):
        for with_qw in settings:
            w, dwq = (qw, dw) if with_qw else (None, None)
            t = time.perf_counter()
            gguf.quantize(dx[:2], name, imatrix=dwq)
            cuda.synchronize()
            first = time.perf_counter() - t
            ref = np.empty((x.shape[0], gguf.row_size(name, x.shape[1])), np.uint8)
            t_c, t_g = [], []
            for _ in range(repeats):  # interleaved
                t_c.append(best(lambda: c_quantize(lib, pool, threads, name, x, w, ref), 1))
                t_g.append(best(synced(lambda: gguf.quantize(dx, name, imatrix=dwq)), 1))
            same = np.array_equal(gguf.quantize(dx, name, imatrix=dwq).copy_to_host(), ref)
            tc, tg = min(t_c), min(t_g)
            print(f"{name:7} {str(with_qw):7} {first:8.2f} {1e3 * tc:8.1f} {1e3 * tg:8.2f} "
                  f"{tg / tc:7.3f} {tg / bw:8.1f} {same}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("types", nargs="*", help="type names (default: all numba_quant has)")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dequantize", action="store_true", help="time dequantize too")
    ap.add_argument("--compile", action="store_true",
                    help="first-call compile time per type (fresh processes)")
    ap.add_argument("--keep-cache", action="store_true",
                    help="reuse the Numba cache ('first' then excludes compilation)")
    ap.add_argument("--gpu", action="store_true",
                    help="time the CUDA kernels on a device array against the C")
    args = ap.parse_args()
    if args.compile:
        compile_times(args.types or [t for t in IDS if t in gguf.TYPES])
        return
    threads = numba.get_num_threads()
    lib = _ggml()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    qw = rng.lognormal(0.0, 1.5, args.cols).astype(np.float32)
    names = args.types or [t for t in IDS if t in gguf.TYPES]
    pool = ThreadPoolExecutor(threads)
    if args.gpu:
        print(f"(rows, cols) = ({args.rows}, {args.cols}) float32; C on {threads} threads")
        gpu_times(lib, pool, threads, names, x, qw, args.repeats)
        return
    print(f"(rows, cols) = ({args.rows}, {args.cols}) float32, {threads} threads")
    for name, settings in _cases(lib, names, "ours", "mem"):
        for with_qw in settings:
            w = qw if with_qw else None
            t = time.perf_counter()
            ours = gguf.quantize(x[:2], name, imatrix=w)
            first = time.perf_counter() - t
            ref = np.empty((args.rows, gguf.row_size(name, args.cols)), np.uint8)
            ours = np.empty_like(ref)   # (both write into a buffer they keep)
            mem_out = np.zeros_like(ref)
            bw = best(traffic_probe(x, mem_out), args.repeats)
            t_c = []
            t_o = []
            for _ in range(args.repeats):  # interleaved
                t_c.append(best(lambda: c_quantize(lib, pool, threads, name, x, w, ref), 1))
                t_o.append(best(lambda: gguf.quantize(x, name, imatrix=w, out=ours), 1))
            same = np.array_equal(ours, ref)
            tc, to = min(t_c), min(t_o)
            print(f"{name:7} {str(with_qw):7} {first:8.2f} {1e3 * tc:8.1f} {1e3 * to:8.1f} "
                  f"{to / tc:7.2f} {to / bw:8.1f} {same}", flush=True)
        if args.dequantize:
            data = gguf.quantize(x, name)
            ref = np.empty_like(x)
            ours = np.empty_like(x)
            mem_out = np.zeros_like(x)
            bw = best(traffic_probe(data, mem_out), args.repeats)
            gguf.dequantize(data[:2], name)
            t_c = []
            t_o = []
            for _ in range(args.repeats):
                t_c.append(best(lambda: c_dequantize(lib, pool, threads, name, data, ref), 1))
                t_o.append(best(lambda: gguf.dequantize(data, name, out=ours), 1))
            same = np.array_equal(ours.view(np.uint32), ref.view(np.uint32))
            tc, to = min(t_c), min(t_o)
            print(f"{name:7} {'deq':7} {'':8} {1e3 * tc:8.1f} {1e3 * to:8.1f} "
                  f"{to / tc:7.2f} {to / bw:8.1f} {same}", flush=True)


if __name__ == "__main__":
    main()
