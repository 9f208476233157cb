#!/usr/bin/env python
"""Speed of the low-precision formats (to_mx, mx_fake_quantize, to_nvfp4, to_float8)
against the memory limit (BW) and, where installed, torchao 0.18 on the CPU.

Usage::

    python benchmarks/formats.py                 # 1e8 float32 elements
    python benchmarks/formats.py --n 10000000 --repeats 3 --no-torchao

Rows: the public function (outputs allocated by the call) and the kernel alone with
preallocated outputs (``_cpu.formats.quantize_blocks``, the call the public function
makes), for MXFP8 (e4m3, block 32, floor), MXFP4 (e2m1), the fused MX fake quantization
(MXFP8), NVFP4 with a given per-tensor scale (one pass) and with the computed one (two
passes), and FP8 per-tensor current scaling (two passes).  ``BW`` is the parallel
read-only pass over the input's bytes (``benchmarks/timing.py``).  Times are medians of
``--repeats`` interleaved repeats after one warm-up call each; torchao runs once per
repeat on the same threads (torch.set_num_threads(numba.get_num_threads())).
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

import numba  # noqa: E402

import numba_quant as nq  # noqa: E402
from numba_quant._cpu import formats as K  # noqa: E402
from numba_quant._host.float_formats import by_name  # noqa: E402
from numba_quant._reference import formats as ref  # noqa: E402
from timing import bandwidth_probe, interleave  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=float, default=1e8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-torchao", action="store_true")
    args = p.parse_args()
    n = int(args.n) // 32 * 32
    rows = n // 4096
    x = np.random.default_rng(0).standard_normal((rows, 4096), dtype=np.float32)
    threads = numba.get_num_threads()

    def kernel_mx(name, fake):
        fmt = by_name(name)
        scales = np.empty((rows, 4096 // 32), np.uint8)
        codes = np.empty(x.shape, np.uint8) if not fake else np.empty((1, 1), np.uint8)
        values = np.empty(x.shape, np.float32) if fake else np.empty((1, 1), np.float32)
        dummy = np.empty((1, 1), np.float32)
        return lambda: K.quantize_blocks(ref.MX, x, 32, fmt.code, 0, fmt.emax, fmt.mbits,
                                         fmt.max, False, 1.0, scales, dummy, codes, values,
                                         not fake, fake)

    def kernel_nvfp4():
        scales = np.empty((rows, 4096 // 16), np.uint8)
        codes = np.empty(x.shape, np.uint8)
        dummy = np.empty((1, 1), np.float32)
        return lambda: K.quantize_blocks(ref.NVFP4, x, 16, ref.E2M1FN, 0, 0, 0, 6.0, False,
                                         0.01, scales, dummy, codes, dummy, True, False)

    impls = {
        "BW (read-only sum)": bandwidth_probe(x),
        "to_mx MXFP8": lambda: nq.to_mx(x, "float8_e4m3fn"),
        "  kernel, outputs preallocated": kernel_mx("float8_e4m3fn", False),
        "to_mx MXFP4": lambda: nq.to_mx(x, "float4_e2m1fn"),
        "  kernel, outputs preallocated ": kernel_mx("float4_e2m1fn", False),
        "mx_fake_quantize MXFP8": lambda: nq.mx_fake_quantize(x, "float8_e4m3fn"),
        "  kernel, output preallocated": kernel_mx("float8_e4m3fn", True),
        "to_nvfp4 (per_tensor_scale given)": lambda: nq.to_nvfp4(x, 0.01),
        "  kernel, outputs preallocated  ": kernel_nvfp4(),
        "to_nvfp4 (per_tensor_scale computed)": lambda: nq.to_nvfp4(x),
        "to_float8 e4m3fn per tensor": lambda: nq.to_float8(x),
    }
    torchao = {}
    if not args.no_torchao:
        try:
            import torch
            from torchao.prototype.mx_formats.mx_tensor import to_mx
            from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor
            torch.set_num_threads(threads)
            xt = torch.from_numpy(x)
            torchao = {
                "to_mx MXFP8": lambda: to_mx(xt, torch.float8_e4m3fn, 32),
                "to_mx MXFP4": lambda: to_mx(xt, torch.float4_e2m1fn_x2, 32),
                "to_nvfp4 (per_tensor_scale computed)": lambda: NVFP4Tensor.to_nvfp4(
                    xt, 16, per_tensor_scale=xt.abs().max() / (448.0 * 6.0)),
            }
        except Exception as e:  # noqa: BLE001 - optional comparison
            print(f"torchao not usable: {type(e).__name__}: {e}")
    # Warm-up (compile, first touch), then the repeats, torchao after ours in each.
    timed = interleave({**{("nq", k): f for k, f in impls.items()},
                        **{("torchao", k): f for k, f in torchao.items()}}, args.repeats)
    times = {k: timed["nq", k].median for k in impls}
    ttimes = {k: timed["torchao", k].median for k in torchao}
    bw = times["BW (read-only sum)"]
    print(f"n = {n:,} float32 ({n * 4 / 1e6:.0f} MB), shape {x.shape}, blocks along the last "
          f"axis, {threads} threads, median of {args.repeats}")
    print(f"{'case':40s} {'time':>9s} {'/ BW':>7s} {'torchao':>9s} {'torchao / nq':>13s}")
    for k, t in times.items():
        line = f"{k:40s} {t * 1e3:7.1f}ms {t / bw:7.2f}"
        if k in ttimes:
            tt = ttimes[k]
            line += f" {tt * 1e3:7.0f}ms {tt / t:13.1f}"
        print(line)


if __name__ == "__main__":
    main()
