#!/usr/bin/env python
"""Compile every CUDA kernel of numba_quant to PTX for an H100 (cc 9.0), without a GPU.

Catches typing and lowering errors that the CUDA simulator lets through (it runs kernels
as Python), and checks the instructions where the GPU must round like the CPU.  Every
kernel of every module of ``numba_quant._cuda`` is compiled for the argument types its
launches pass (float32 and float64, contiguous "C" and strided "A" views, the code and
output types, bfloat16/float16 bit patterns as uint16), one line per kernel and
signature.  The PTX of each is checked for:

* approximate division (``div.approx``/``div.full``): none anywhere;
* fused multiply-adds (``fma``): none in the block-wise kernels (``_cuda.blocks``, any
  width), in the float-format kernels (``_cuda.formats``, float32) and in the GGUF
  kernels (``_cuda.gguf``, float32: ggml's C rounds every product), where the CPU
  rounds every product on its own;
* local memory (``st.local``) in the float-format kernels: the bit casts must lower to
  moves, not to a round trip through memory;
* the moving-average update (``ref.moving_update``, compiled in a probe kernel): both
  products rounded on their own (``mul.rn``), nothing fused.

A kernel of ``numba_quant._cuda`` with no signature here is a failure too (a new kernel
must be added to :func:`signatures`).  Exits non-zero on any failure.

Needs numba-cuda with the CUDA toolkit packages and no driver or GPU; the device's
compute capability is supplied by patching ``numba.cuda.dispatcher.get_current_device``
in this process only.  A separate virtual environment (docs/testing.md)::

    python -m venv /work/venv-ptx
    /work/venv-ptx/bin/pip install numba numpy "numba-cuda[cu12]" -e .
    /work/venv-ptx/bin/python tools/check_ptx.py [-v] [--modules kernels,blocks,...]

``-v`` prints the instruction counts of every signature and whole error messages;
``--modules`` compiles the kernels of some modules only (kernels, hist, blockwise,
chunks, blocks, formats, gguf; the probe goes with ``kernels``, the completeness check is
skipped).
"""
import argparse
import importlib
import os
import pkgutil
import re
import sys
import time
import types as pytypes

if os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
    sys.exit("check_ptx.py compiles real PTX: unset NUMBA_ENABLE_CUDASIM")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

CC = (9, 0)

import numba.cuda.dispatcher as _dispatcher  # noqa: E402

_fake_device = pytypes.SimpleNamespace(compute_capability=CC, name="check_ptx (cc 9.0)")
_dispatcher.get_current_device = lambda: _fake_device

from numba import cuda, types  # noqa: E402

import numba_quant._cuda as cuda_package  # noqa: E402
from numba_quant._cuda import blocks as B  # noqa: E402
from numba_quant._cuda import blockwise as BW  # noqa: E402
from numba_quant._cuda import chunks as CH  # noqa: E402
from numba_quant._cuda import formats as F  # noqa: E402  (registers the bit casts)
from numba_quant._cuda import gguf as G  # noqa: E402
from numba_quant._cuda import hist as H  # noqa: E402
from numba_quant._cuda import kernels as K  # noqa: E402  (registers the CUDA primitives)
from numba_quant._reference import integer as ref  # noqa: E402

i64, i32, b1 = types.int64, types.int32, types.boolean
f32, f64, u8, u16 = types.float32, types.float64, types.uint8, types.uint16
FLOATS = (f32, f64)
BITS = {f32: i32, f64: i64}
BLOCK4 = types.UniTuple(i64, 4)

# What each module's PTX must not contain beyond approximate divisions: (name, pattern).
FORBIDDEN = {
    "blocks": (("fused multiply-add", r"\bfma\."),),
    "formats": (("fused multiply-add", r"\bfma\.rn\.f32"),),
    # (float32: MXFP4's float64 log2 is libdevice's, whose own algorithm uses fma.rn.f64)
    "gguf": (("fused multiply-add", r"\bfma\.rn\.f32"),),
}
# Counts printed per signature (with -v all of them; else the global loads and stores).
COUNTS = (("fma", r"\bfma\."), ("mul.rn", r"mul\.rn\.f"), ("div.rn", r"div\.rn"),
          ("mov.b32", r"mov\.b32"), ("atom", r"atom\."), ("ld.global", r"ld\.global"),
          ("st.global", r"st\.global"))


def arr(dtype, ndim, layout="C"):
    return types.Array(dtype, ndim, layout)


def kernels_signatures():
    """The OneFlow kernels (``_cuda.kernels``): reductions, parameters, maps, copies."""
    keys = arr(i64, 2)
    count = arr(i64, 1)
    status = arr(i32, 1)
    for T in FLOATS:
        bits = BITS[T]
        vec = arr(T, 1)
        settle = (b1, bits, bits, T, i64, i64, i64, arr(T, 2), status)
        for layout in ("C", "A"):
            x3 = arr(bits, 3, layout)
            yield (K.minmax_flat, f"{T} bits {layout}", (x3, b1, bits, bits, keys))
            yield (K.minmax_rows, f"{T} bits {layout}",
                   (x3, b1, bits, bits, keys, i64, i64, b1))
            yield (K.minmax_cols, f"{T} bits {layout}",
                   (x3, b1, bits, bits, keys, i64, i64, i64))
            yield (K.minmax_each, f"{T} bits {layout}", (x3,) + settle)
            yield (K.count_nonfinite, f"{T} bits {layout}", (x3, b1, bits, bits, count))
        yield (K.settle_keys, f"{T}", (keys,) + settle)
        for layout in ("C", "A"):
            state = arr(T, 1, layout)
            yield (K.moving_observe, f"{T} state {layout}",
                   (vec, vec, state, state, b1, f32, i64, i64, vec, vec))
            yield (K.moving_observe, f"{T} no update, state {layout}",
                   (state, state, state, state, b1, f32, i64, i64, vec, vec))
        yield (K.code_params, f"{T}", (vec, vec, i64, i64, b1, arr(T, 2), status))
        for in_layout in ("C", "A"):
            for out in (T, types.int8, u8, types.int16, u16):
                for out_layout in ("C", "A"):
                    yield (K.map_values, f"{T} {in_layout} -> {out} {out_layout}",
                           (arr(T, 3, in_layout), arr(out, 3, out_layout), arr(T, 2), i64,
                            i64, i64))
    yield (K.fill_keys, "", (keys,))
    copies = [(types.float16, f32), (f32, f32), (f64, f64), (types.int8, f32), (u16, f64),
              (types.int16, types.int16), (u8, u8), (i32, f32), (types.float16, f64)]
    for src, dst in copies:
        for ndim in (1, 2, 5):
            tup = types.UniTuple(i64, ndim)
            yield (K.copy_strided, f"{src} -> {dst} ndim {ndim}",
                   (arr(src, 1), i64, tup, arr(dst, 1), i64, tup, tup))


def blockwise_signatures():
    """``block_size=`` of the OneFlow functions (``_cuda.blockwise``, 4-D strided views)."""
    count = arr(i64, 1)
    for T in FLOATS:
        yield (BW.observe_blocks, f"{T} A",
               (arr(T, 4, "A"), BLOCK4, b1, i64, i64, T, arr(T, 1), arr(T, 1), arr(u8, 1),
                count))
        yield (BW.minmax_blocks, f"{T} A",
               (arr(T, 4, "A"), BLOCK4, b1, arr(T, 1), arr(T, 1), arr(u8, 1), count))
        for out in (T, types.int8, u8, types.int16, u16):
            yield (BW.map_blocks, f"{T} A -> {out} A",
                   (arr(T, 4, "A"), arr(out, 4, "A"), BLOCK4, arr(T, 2), i64, i64, i64))


def hist_signatures():
    """The histograms (``_cuda.hist``): per channel (both grids: the grid is a run-time
    argument) and per block."""
    for T in FLOATS:
        yield (H.histogram_blocks, f"{T} A",
               (arr(T, 4, "A"), BLOCK4, i64, arr(f64, 1), arr(f64, 1), i64, arr(i64, 2)))
        for layout in ("C", "A"):
            yield (H.histogram, f"{T} {layout}",
                   (arr(T, 3, layout), i64, arr(f64, 1), arr(f64, 1), i64, arr(i64, 2)))


def chunks_signatures():
    """bfloat16 bits widened into a chunk's float32 buffer (``_cuda.chunks``)."""
    for ndim in (1, 2, 5):
        tup = types.UniTuple(i64, ndim)
        yield (CH.widen_bfloat16, f"uint16 -> float32 ndim {ndim}",
               (arr(u16, 1), i64, tup, arr(f32, 1), tup))


def blocks_signatures():
    """Block-wise quantization (``_cuda.blocks``): float32, float64 and the uint16 bits of
    bfloat16/float16 in, contiguous and strided 4-D views, every code type; dequantize
    to float32, float64 and uint16 bits."""
    count = arr(i64, 1)
    for raw, T in ((f32, f32), (u16, f32), (f64, f64)):
        for layout in ("C", "A"):
            for code in (u8, types.int8, types.int16):
                label = f"{raw} {layout} -> {code}"
                yield (B.observe, label,
                       (arr(raw, 4, layout), i64, BLOCK4, i64, i64, i64, i64, T, i64, i64,
                        i64, arr(T, 4), arr(i32, 4), arr(code, 4, layout), b1, count))
                yield (B.quantize, label,
                       (arr(raw, 4, layout), i64, BLOCK4, arr(T, 4), i64, arr(i32, 4), i64,
                        i64, i64, arr(code, 4, layout), count))
    for T in FLOATS:
        for out in (f32, f64, u16):
            for code in (u8, types.int8):
                yield (B.dequantize, f"{code} -> {out} ({T})",
                       (arr(code, 4), BLOCK4, arr(T, 4), arr(i32, 4), i64, i64, i64, i64,
                        arr(out, 4), count))


def formats_signatures():
    """The low-precision float formats (``_cuda.formats``): element conversions, block
    maxima, MX/NVFP4 block quantization and dequantization."""
    u8_1, u8_2 = arr(u8, 1), arr(u8, 2)
    for T in FLOATS:
        yield F.encode_kernel, f"{T}", (arr(T, 1), i64, b1, b1, u8_1)
    yield F.decode_kernel, "", (u8_1, i64, b1, arr(f32, 1))
    yield F.group_abs_max_kernel, "", (arr(f32, 2), i64, arr(f32, 2), arr(i64, 1))
    yield (F.quantize_blocks_kernel, "",
           (i64, arr(f32, 2), i64, i64, i64, i64, i64, f64, b1, f32, u8_2, arr(f32, 2),
            u8_2, arr(f32, 2), b1, b1, arr(i64, 1)))
    yield (F.dequantize_blocks_kernel, "",
           (i64, u8_2, arr(f32, 2), u8_2, i64, i64, f32, arr(f32, 2)))


def gguf_signatures():
    """The GGUF types (``_cuda.gguf``): one thread per run of blocks, quantize and
    dequantize."""
    for quantize, dequantize in G.KERNELS.values():
        yield (quantize, "", (arr(f32, 2), arr(f32, 1), arr(u8, 2), arr(i32, 1), i64,
                              arr(i64, 1), i64, i64))
        yield dequantize, "", (arr(u8, 2), arr(f32, 2), i64, i64, i64)


SIGNATURES = {"kernels": kernels_signatures, "blockwise": blockwise_signatures,
              "hist": hist_signatures, "chunks": chunks_signatures,
              "blocks": blocks_signatures, "formats": formats_signatures,
              "gguf": gguf_signatures}


def count(ptx, pattern):
    return len(re.findall(pattern, ptx))


def module_of(kernel):
    return kernel.py_func.__module__.rsplit(".", 1)[-1]


def problems_of(module, ptx):
    """What the PTX of a kernel of ``module`` must not contain, found in ``ptx``."""
    found = []
    approx = count(ptx, r"div\.(approx|full)")
    if approx:
        found.append(f"{approx} approximate divisions")
    for what, pattern in FORBIDDEN.get(module, ()):
        n = count(ptx, pattern)
        if n:
            found.append(f"{n} {what}s")
    if module == "formats" and count(ptx, r"\blocal\b") and count(ptx, r"st\.local"):
        found.append("local memory (a bit cast through memory?)")
    return found


def _update_probe(moving, new, momentum, out):
    out[0] = ref.moving_update(moving[0], new[0], momentum)


def check_update():
    """The moving-average update: both products rounded on their own, nothing fused."""
    failures = 0
    for T in FLOATS:
        label = f"{T} moving_update"
        try:
            ptx, _ = cuda.compile_ptx(_update_probe, (arr(T, 1), arr(T, 1), f32, arr(T, 1)),
                                      cc=CC)
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failures += 1
            print(f"FAIL {'update probe':32s} {label}: {type(e).__name__}: {e}")
            continue
        suffix = "f32" if T == f32 else "f64"
        muls = count(ptx, rf"mul\.rn\.{suffix}")
        fmas = count(ptx, r"\bfma\.")
        ok = muls >= 2 and fmas == 0
        failures += not ok
        print(f"{'ok' if ok else 'FAIL':4s} {'update probe':32s} {label:34s} "
              f"mul.rn.{suffix}={muls} fma={fmas}")
    return failures


def all_kernels():
    """Every kernel (not device function) defined in a module of ``numba_quant._cuda``,
    as ``module.name``, and the modules that failed to import."""
    found, broken = set(), []
    for info in pkgutil.iter_modules(cuda_package.__path__):
        name = f"{cuda_package.__name__}.{info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - report, go on
            broken.append(f"{name}: {type(e).__name__}: {e}")
            continue
        values = list(vars(module).values())
        for table in [v for v in values if isinstance(v, dict)]:   # (kernels by type)
            values += [k for entry in table.values() if isinstance(entry, tuple)
                       for k in entry]
        for value in values:
            if (isinstance(value, _dispatcher.CUDADispatcher)
                    and not value.targetoptions.get("device", False)
                    and value.py_func.__module__ == name):
                found.add(f"{info.name}.{value.py_func.__name__}")
    return found, broken


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print every instruction count and whole error messages")
    parser.add_argument("--modules", default=",".join(SIGNATURES),
                        help="modules of numba_quant._cuda whose kernels to compile "
                        "(default: all: %(default)s)")
    args = parser.parse_args(argv)
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = [m for m in modules if m not in SIGNATURES]
    if unknown:
        parser.error(f"--modules: unknown {', '.join(unknown)}; expected some of "
                     f"{', '.join(SIGNATURES)}")
    failures = compiled = 0
    covered = set()
    start = time.time()
    for module in modules:
        for kernel, label, argtypes in SIGNATURES[module]():
            name = f"{module_of(kernel)}.{kernel.py_func.__name__}"
            covered.add(name)
            t0 = time.time()
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=CC)
            except Exception as e:  # noqa: BLE001 - report every failure, go on
                failures += 1
                lines = str(e).strip().splitlines()
                print(f"FAIL {name:32s} {label}: {type(e).__name__}: "
                      f"{lines[0] if lines else ''}")
                if args.verbose:
                    print(e)
                continue
            compiled += 1
            problems = problems_of(module_of(kernel), ptx)
            failures += bool(problems)
            status = "FAIL (" + ", ".join(problems) + ")" if problems else "ok"
            shown = COUNTS if args.verbose else COUNTS[-2:]
            counts = " ".join(f"{k}={count(ptx, p)}" for k, p in shown)
            print(f"{status:4s} {name:32s} {label:34s} {len(ptx):7d} chars "
                  f"{time.time() - t0:5.2f} s {counts}", flush=True)
    if "kernels" in modules:
        failures += check_update()
    if set(modules) == set(SIGNATURES):
        kernels, broken = all_kernels()
        for line in broken:
            failures += 1
            print(f"FAIL import {line}")
        for name in sorted(kernels - covered):
            failures += 1
            print(f"FAIL {name:32s} no signature in tools/check_ptx.py: not compiled")
        print(f"{len(kernels)} kernels in numba_quant._cuda, {len(kernels & covered)} of "
              f"them compiled")
    print(f"{compiled} kernel signatures compiled for cc {CC[0]}.{CC[1]} in "
          f"{time.time() - start:.1f} s; {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
