"""Where the time of a small GPU call goes: numba-cuda primitives and a profile.

Run on a machine with a GPU and CuPy (``python tools/gpu_overhead.py``).  Prints the
wall time per call of the building blocks a public call is made of (allocations, array
conversions, launches, read-backs), then a cProfile of the public calls on 1,000
float32 elements.  Wall times: each includes a device synchronisation where noted.
"""
import cProfile
import io
import pstats
import time

import cupy as cp
import numpy as np
from numba import cuda

import numba_quant as nq
from numba_quant._cuda import channels as C
from numba_quant._cuda import arrays as _cuda_arrays


def per_call(fn, reps=300):
    fn()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    cuda.synchronize()
    return (time.perf_counter() - t0) / reps


@cuda.jit
def touch(a):
    if cuda.grid(1) == 0:
        a[0] = 1.0


x = cp.random.default_rng(0).standard_normal(1000, dtype=cp.float32)
d = cuda.as_cuda_array(x)
small = cuda.device_array(1, np.float32)
rows = [
    ("cuda.device_array(64)", lambda: cuda.device_array(64, np.float32)),
    ("cupy.empty(64)", lambda: cp.empty(64, cp.float32)),
    ("cuda.as_cuda_array(cupy array)", lambda: cuda.as_cuda_array(x)),
    ("_cuda_arrays.device(cupy array)", lambda: _cuda_arrays.device(x)),
    ("_cuda_arrays.info(numba array)", lambda: _cuda_arrays.info(d)),
    ("_cuda_arrays.reduction_view(per layer)",
     lambda: _cuda_arrays.reduction_view(d, None, np.int32)),
    ("cupy.asarray(numba array)", lambda: cp.asarray(small)),
    ("launch touch[1, 32](numba array)", lambda: touch[1, 32](small)),
    ("launch touch[1, 32](cupy array)", lambda: touch[1, 32](x)),
    ("copy_to_host of 1 element (sync)", lambda: small.copy_to_host()),
    ("cupy x.min(), x.max()", lambda: (x.min(), x.max())),
    ("C.channel_minmax(per layer)", lambda: C.channel_minmax(d, None, False)),
    ("nq.min_max_observer(cupy 1000)", lambda: nq.min_max_observer(x)),
    ("nq.min_max_observer(numba 1000)", lambda: nq.min_max_observer(d)),
]
s, z = nq.min_max_observer(x)
rows.append(("nq.fake_quantization(cupy 1000)", lambda: nq.fake_quantization(x, s, z)))
out = cp.empty_like(x)
rows.append(("nq.fake_quantization(cupy 1000, out=)",
             lambda: nq.fake_quantization(x, s, z, out=out)))
for name, fn in rows:
    print(f"{name:42s} {per_call(fn) * 1e6:9.1f} us", flush=True)

for name, fn in rows[-4:]:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        fn()
    cuda.synchronize()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(22)
    print(f"\n===== profile: 200 x {name}")
    print("\n".join(line for line in buf.getvalue().splitlines()[6:] if line.strip()))
