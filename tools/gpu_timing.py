"""GPU timing: numba_quant reductions and fake quantization vs CuPy and copy bandwidth.

Times are CUDA-event times per call (mean of GQ_REPS calls after one warm-up), float32,
GQ_N elements (default 1e8).  "call" rows are the public functions (Python overhead and
the status read-back included); "kernel only" rows launch the reduction kernel alone.
"% of copy" compares bytes moved per second with a device-to-device copy (read + write).
"""
import os
import sys
import traceback

import cupy as cp
import numpy as np
from numba import cuda

import numba_quant as nq
from numba_quant._cuda import channels as C
from numba_quant._cuda import scratch
from numba_quant._cuda import arrays as _cuda_arrays
from numba_quant._cuda import launch as _cuda_launch
from numba_quant._host import tuning as _tuning

N = int(float(os.environ.get("GQ_N", "1e8")))
REPS = int(os.environ.get("GQ_REPS", "10"))


def bench(fn, reps=REPS, rounds=3):
    """Seconds per call: the best of ``rounds`` rounds of ``reps`` calls."""
    fn()
    dev.synchronize()
    best = float("inf")
    for _ in range(rounds):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, end) / reps * 1e-3)
    return best


def guard(fn):
    global errors
    try:
        fn()
    except Exception:  # noqa: BLE001 - report and go on with the next case
        errors += 1
        traceback.print_exc(file=sys.stdout)


def row(case, t, bytes_moved, ref_t=None, ref_name=""):
    bw = bytes_moved / t
    extra = f"  {ref_name} {ref_t * 1e3:.3f} ms, ratio {t / ref_t:.2f}" if ref_t else ""
    print(f"{case:58s} {t * 1e3:8.3f} ms {bw / 1e12:6.2f} TB/s {100 * bw / copy_bw:6.1f}%{extra}",
          flush=True)


def kernel_only(a, axis, unit_stride=None):
    """The reduction kernel alone (no settle kernel, no status read-back).
    ``unit_stride=False`` times the general plan where the flat kernel would run."""
    d = _cuda_arrays.device(a)
    itype = scratch.int_type(d.dtype)
    x3 = _cuda_arrays.reduction_view(d, axis, itype)
    o, c, i = (int(v) for v in x3.shape)
    mask, inf_bits = scratch.key_constants(d.dtype)
    if unit_stride is None:
        unit_stride = x3.strides[2] == x3.dtype.itemsize
    kernel, blocks, threads, plan = _cuda_launch.plan_minmax(o, c, i, unit_stride)
    if kernel is C.kernels.minmax_each:
        out = cuda.device_array((2, c), d.dtype)
        status = cuda.device_array(1, np.int32)
        args = (x3, False, mask, inf_bits, d.dtype.type(0), 0, 0, 0, out, status)
    else:
        keys = cuda.to_device(np.stack([np.full(c, C.kernels.START_LO), np.full(c, C.kernels.START_HI)]))
        args = (x3, False, mask, inf_bits, keys) + plan
    t = bench(lambda: kernel[blocks, threads](*args))
    return t, f"{kernel.py_func.__name__}[{blocks},{threads}]{plan}"


def check_minmax(name, a, axis):
    """The reduction's per-channel min and max equal CuPy's."""
    global errors
    lo, hi, status = C.channel_minmax(_cuda_arrays.device(a), axis, False)
    other = tuple(k for k in range(a.ndim) if k != axis) if axis is not None else None
    want_lo = a.min(axis=other).ravel().get()
    want_hi = a.max(axis=other).ravel().get()
    if status != 0 or not (np.array_equal(lo.copy_to_host(), want_lo)
                           and np.array_equal(hi.copy_to_host(), want_hi)):
        errors += 1
        print(f"MISMATCH {name}: status {status}")


def observe_case(name, a, axis):
    check_minmax(name, a, axis)
    per_layer = axis is None
    t_call = bench(lambda: nq.min_max_observer(a, per_layer_quantization=per_layer, axis=axis or 0))
    if per_layer:
        ref_t, ref_name = cupy_minmax, "cupy min+max"
    else:
        other = tuple(k for k in range(a.ndim) if k != axis)
        ref_t = bench(lambda: (a.min(axis=other), a.max(axis=other)))
        ref_name = "cupy min+max(axis)"
    row(f"min_max_observer {name} (call)", t_call, a.nbytes, ref_t, ref_name)
    t_k, desc = kernel_only(a, axis)
    row(f"  kernel only {desc}", t_k, a.nbytes, ref_t, ref_name)
    if per_layer:
        t_k, desc = kernel_only(a, axis, unit_stride=False)
        row(f"  general plan {desc}", t_k, a.nbytes, ref_t, ref_name)


def conv_case(axis):
    check_minmax(f"{W_SHAPE} axis {axis}", w, axis % 4)
    t_call = bench(lambda: nq.min_max_observer(w, per_layer_quantization=False, axis=axis), reps=50)
    other = tuple(k for k in range(4) if k != axis % 4)
    ref_t = bench(lambda: (w.min(axis=other), w.max(axis=other)), reps=50)
    row(f"min_max_observer {W_SHAPE} axis {axis} (call)", t_call, w.nbytes, ref_t, "cupy min+max(axis)")
    t_k, desc = kernel_only(w, axis % 4)
    row(f"  kernel only {desc}", t_k, w.nbytes, ref_t, "cupy min+max(axis)")


def small_calls():
    """Whole-call latency for small inputs (launches, the status read-back)."""
    for n in (1000, 100000):
        a = x[:n]
        ref = bench(lambda: (a.min(), a.max()), reps=100)
        row(f"min_max_observer per-layer {n} elements (call)",
            bench(lambda: nq.min_max_observer(a), reps=100), a.nbytes, ref, "cupy min+max")
        s, z = nq.min_max_observer(a)
        row(f"fake_quantization per-layer {n} elements (call)",
            bench(lambda: nq.fake_quantization(a, s, z), reps=100), 2 * a.nbytes)
    mmax, mmin = cp.zeros(64, cp.float32), cp.zeros(64, cp.float32)
    a = x.reshape(64, -1)
    row("moving_average_min_max_observer C=64 axis 0 (call)",
        bench(lambda: nq.moving_average_min_max_observer(a, 1, mmax, mmin, False, 0, axis=0)),
        a.nbytes, cupy_minmax, "cupy min+max per-layer")


def fake_cases():
    s, z = nq.min_max_observer(x)
    cupy_fake = bench(lambda: cp.multiply(cp.clip(cp.rint(x / s), -128, 127, out=out), s, out=out))
    row("cupy rint/clip/multiply per-layer (reference)", cupy_fake, 2 * nbytes)
    row("fake_quantization per-layer out= (call)", bench(lambda: nq.fake_quantization(x, s, z, out=out)),
        2 * nbytes, cupy_fake, "cupy")
    row("fake_quantization per-layer, new output (call)", bench(lambda: nq.fake_quantization(x, s, z)),
        2 * nbytes, cupy_fake, "cupy")
    for name, a, axis in cases[1:3]:
        s, z = nq.min_max_observer(a, per_layer_quantization=False, axis=axis)
        o = out.reshape(a.shape)
        row(f"fake_quantization {name} out= (call)",
            bench(lambda: nq.fake_quantization(a, s, z, axis=axis, out=o)), 2 * nbytes, cupy_fake, "cupy per-layer")
    s, z = nq.min_max_observer(x)
    q = cp.empty(N, cp.int8)
    row("quantize per-layer to int8 out= (call, NaN check included)",
        bench(lambda: nq.quantize(x, s, z, out=q)), nbytes + N)


def launch_configs():
    saved = dict(_tuning.LAUNCH)
    try:
        configs = os.environ.get("GQ_CONFIGS", "128x1056,256x528,256x1056,256x2112,512x264,512x1056")
        for threads, blocks in (tuple(int(v) for v in c.split("x")) for c in configs.split(",")):
            _tuning.LAUNCH.update(threads=threads, max_blocks=blocks)
            t_k, desc = kernel_only(x, None)
            row(f"  per-layer kernel, threads {threads}, max_blocks {blocks}", t_k, nbytes, cupy_minmax, "cupy")
            t_k, desc = kernel_only(x.reshape(-1, 64), 1)
            row(f"  channels-last C=64 kernel, threads {threads}, max_blocks {blocks}", t_k, nbytes, cupy_minmax, "cupy")
            t_k, desc = kernel_only(x.reshape(-1, 4), 0)
            row(f"  rows of 4 kernel, threads {threads}, max_blocks {blocks}", t_k, nbytes, cupy_minmax, "cupy")
            t_k, desc = kernel_only(x.reshape(64, -1), 0)
            row(f"  C=64 axis 0 kernel, threads {threads}, max_blocks {blocks}", t_k, nbytes, cupy_minmax, "cupy")
    finally:
        _tuning.LAUNCH.clear()
        _tuning.LAUNCH.update(saved)


def main():
    """Run every timing; exits 1 when a case failed."""
    global W_SHAPE, cases, copy_bw, cupy_minmax, dev, errors, nbytes, out, rng, w, x
    dev = cp.cuda.Device()
    try:
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"device {name}, {props['multiProcessorCount']} SMs; N={N:.0e} float32; reps={REPS}; LAUNCH={_tuning.LAUNCH}")
    except Exception as e:  # noqa: BLE001
        print("device properties unavailable:", e)
    errors = 0
    rng = cp.random.default_rng(0)
    x = rng.standard_normal(N, dtype=cp.float32)
    nbytes = x.nbytes
    y = cp.empty_like(x)
    t_copy = bench(lambda: cp.copyto(y, x))
    copy_bw = 2 * nbytes / t_copy
    t_sum = bench(lambda: x.sum())
    print(f"copy {t_copy * 1e3:.3f} ms = {copy_bw / 1e12:.2f} TB/s (read + write); "
          f"cupy x.sum() {t_sum * 1e3:.3f} ms = {nbytes / t_sum / 1e12:.2f} TB/s read")
    y = None  # (frees the copy target)
    print(f"{'case':58s} {'time':>11s} {'rate':>10s} {'% copy':>7s}   reference")
    cupy_minmax = bench(lambda: (x.min(), x.max()))
    row("cupy x.min(), x.max() (reference)", cupy_minmax, nbytes)
    cases = [("per-layer", x, None), ("C=64 axis 0", x.reshape(64, -1), 0),
             ("C=64 axis -1 (channels last)", x.reshape(-1, 64), 1),
             (f"({N // 1152},128,3,3) axis 1", x[: (N // 1152) * 1152].reshape(-1, 128, 3, 3), 1),
             ("C=N/4 (rows of 4) axis 0", x.reshape(-1, 4), 0),
             ("C=N/4 axis -1 (4 rows)", x.reshape(4, -1), 1)]
    for name, a, axis in cases:
        guard(lambda: observe_case(name, a, axis))
    W_SHAPE = tuple(int(v) for v in os.environ.get("GQ_W", "256,128,3,3").split(","))
    w = rng.standard_normal(W_SHAPE, dtype=cp.float32)
    for axis in (0, 1, -1):
        guard(lambda: conv_case(axis))
    guard(small_calls)
    out = cp.empty_like(x)
    guard(fake_cases)
    guard(launch_configs)
    print(f"timing done, {errors} error(s)")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
