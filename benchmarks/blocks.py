#!/usr/bin/env python
"""Benchmarks of block-wise quantization against the memory limit and torchao (CPU).

Usage::

    python benchmarks/blocks.py                  # float32 weight (4096, 24576), ~1e8 values
    python benchmarks/blocks.py --rows 1024      # a quarter of it (quicker)
    python benchmarks/blocks.py --no-torchao

Rows (uint4 range, asymmetric): observe only (``choose_qparams_affine``), observe and
quantize to uint8 codes in one call with ``out=`` given
(``choose_qparams_and_quantize_affine``), the same with (128, 128) tiles, and the same
from bfloat16 input (``ml_dtypes.bfloat16``; scale_dtype float32 and the input's own
bfloat16 scale).  ``BW`` is the parallel read-only pass over the input's bytes
(``benchmarks/timing.py``); torchao runs ``choose_qparams_affine`` + ``quantize_affine`` on a torch
tensor over the same memory, with torch's threads set to Numba's.  Medians of repeats,
implementations interleaved (``timing.measure``).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402,F401  (fresh Numba cache, numba_quant from this checkout)
import numba  # noqa: E402
import numpy as np  # noqa: E402

import numba_quant as nq  # noqa: E402
from timing import bandwidth_probe, measure  # noqa: E402


def torchao_impl(x, block, bf16=False):
    try:
        import torch
        from torchao.quantization.quant_primitives import (MappingType,
                                                           choose_qparams_affine,
                                                           quantize_affine)
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    t = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16) if bf16 else torch.from_numpy(x)

    def call():
        s, z = choose_qparams_affine(t, MappingType.ASYMMETRIC, block, torch.uint4, 0, 15,
                                     zero_point_dtype=torch.int32)
        return quantize_affine(t, block, s, z, torch.uint4, 0, 15)
    return call


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=24576)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.3)
    ap.add_argument("--no-torchao", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    import ml_dtypes
    xb = x.astype(ml_dtypes.bfloat16)
    codes = np.empty(x.shape, np.uint8)
    g = (1, 128)
    tile = (128, 128)
    rows = [
        ("observe (1,128)", x, {
            "nq": lambda: nq.choose_qparams_affine(x, "asymmetric", g, "uint4")}),
        ("observe+quantize (1,128)", x, {
            "nq": lambda: nq.choose_qparams_and_quantize_affine(x, "asymmetric", g, "uint4",
                                                               out=codes),
            "nq 2 calls": lambda: nq.quantize_affine(
                x, g, *nq.choose_qparams_affine(x, "asymmetric", g, "uint4"), "uint4",
                out=codes),
            "torchao": None if args.no_torchao else torchao_impl(x, g)}),
        ("observe+quantize (128,128)", x, {
            "nq": lambda: nq.choose_qparams_and_quantize_affine(x, "asymmetric", tile, "uint4",
                                                               out=codes)}),
        ("bf16 observe+quantize (1,128), f32 scale", xb, {
            "nq": lambda: nq.choose_qparams_and_quantize_affine(
                xb, "asymmetric", g, "uint4", scale_dtype=np.float32, out=codes)}),
        ("bf16 observe+quantize (1,128), bf16 scale", xb, {
            "nq": lambda: nq.choose_qparams_and_quantize_affine(xb, "asymmetric", g, "uint4",
                                                               out=codes),
            "torchao": None if args.no_torchao else torchao_impl(xb, g, bf16=True)}),
    ]
    print(f"x {x.shape} float32 ({x.nbytes / 1e6:.0f} MB; bfloat16 {xb.nbytes / 1e6:.0f} MB), "
          f"{numba.get_num_threads()} Numba threads")
    f32_time = None
    for name, data, impls in rows:
        impls = dict(impls)
        impls["BW"] = bandwidth_probe(data if data.dtype == np.float32
                                      else data.view(np.uint16))
        res, errors = measure(impls, args.repeats, args.target)
        t = {k: v["median"] for k, v in res.items()}
        parts = [f"{k} {v * 1e3:8.2f} ms" for k, v in t.items()]
        line = f"{name:44s} " + "  ".join(parts)
        line += f"  | nq/BW {t['nq'] / t['BW']:.2f}"
        if "torchao" in t:
            line += f"  torchao/nq {t['torchao'] / t['nq']:.1f}"
        if "nq 2 calls" in t:
            line += f"  2calls/nq {t['nq 2 calls'] / t['nq']:.2f}"
        if name.startswith("observe+quantize (1,128)"):
            f32_time = t["nq"]
        if name.startswith("bf16") and f32_time:
            line += f"  nq/nq(f32) {t['nq'] / f32_time:.2f}"
        print(line, flush=True)
        for k, e in errors.items():
            print(f"    {k}: {e}")


if __name__ == "__main__":
    main()
