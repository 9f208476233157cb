#!/usr/bin/env python
"""numba_quant GPU path vs CPU path, bit for bit, and the golden file on the GPU.

Environment: GQ_KIND (sim | cupy | numba | torch; default sim in the simulator, else
cupy), GQ_SIZE (tiny | medium), GQ_SECTIONS (comma list of layouts, nonfinite, edges,
moving, golden, types; default all), GQ_GOLDEN (path of oneflow_cases.npz).
Prints one line per failure and a summary; exits 1 on any failure.
"""
import itertools
import json
import os
import sys
import time

import numpy as np
from numba import config, cuda

import numba_quant as nq
from numba_quant._host import tuning as _tuning

SIM = bool(config.ENABLE_CUDASIM)
KIND = os.environ.get("GQ_KIND", "sim" if SIM else "cupy")
SIZE = os.environ.get("GQ_SIZE", "tiny" if SIM else "medium")
SECTIONS = os.environ.get("GQ_SECTIONS", "layouts,nonfinite,edges,moving,golden,types").split(",")
GOLDEN = os.environ.get("GQ_GOLDEN", "tests/data/oneflow_cases.npz")
rng = np.random.default_rng(int(os.environ.get("GQ_SEED", 1)))
failures = []
checks = 0
t0 = time.time()


def put(base, idx=(), axes=None, kind=None):
    """Host ``base`` to the device, then viewed as ``base[idx].transpose(axes)``."""
    kind = kind or KIND
    if kind == "cupy":
        import cupy
        d = cupy.asarray(base)
    elif kind == "torch":
        import torch
        d = torch.as_tensor(np.array(base, order="C")).cuda()
    else:
        d = cuda.to_device(np.array(base, order="C"))
    if idx != ():
        d = d[idx]
    if axes is not None:
        d = d.permute(*axes) if kind == "torch" else d.transpose(axes)
    return d


def host(a):
    if isinstance(a, np.ndarray):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        return a.get()
    if mod == "torch":
        return a.cpu().numpy()
    return a.copy_to_host()


def same(a, b, what, by_value=False):
    """Equal dtype, shape and bits (by_value: ==); NaN equals NaN."""
    global checks
    checks += 1
    a, b = np.asarray(a), np.asarray(b)
    ok = a.dtype == b.dtype and a.shape == b.shape
    if ok:
        if a.dtype.kind == "f":
            nan = np.isnan(a) & np.isnan(b)
            if by_value:
                ok = bool(np.all(nan | (a == b)))
            else:
                u = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
                ok = bool(np.all(nan | (a.view(u) == b.view(u))))
        else:
            ok = bool(np.array_equal(a, b))
    if not ok:
        failures.append(what)
        if len(failures) <= 40:
            print("FAIL", what, a.dtype, b.dtype, a.shape, b.shape)
            if a.shape == b.shape and a.size:
                bad = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))) if a.dtype.kind == "f"
                                     else a != b)[:4] if a.dtype == b.dtype else []
                for k in bad:
                    print(f"   at {np.unravel_index(k, a.shape)}: gpu {a.flat[k]!r} cpu {b.flat[k]!r}")
    return ok


def both(fn, hx, dx, what):
    """``fn`` on the host and on the device array: the same results, or the same error."""
    global checks
    try:
        ch, e_c = fn(hx), None
    except (ValueError, TypeError) as e:
        ch, e_c = None, e
    try:
        cd, e_d = fn(dx), None
    except (ValueError, TypeError) as e:
        cd, e_d = None, e
    if e_c is not None or e_d is not None:
        checks += 1
        if type(e_c) is not type(e_d) or str(e_c) != str(e_d):
            failures.append(what + " (errors differ)")
            print("FAIL", what, "\n   cpu:", repr(e_c), "\n   gpu:", repr(e_d))
        return None, None
    if isinstance(ch, tuple):
        for k, (u, v) in enumerate(zip(cd, ch)):
            same(host(u), v, f"{what}[{k}]")
    else:
        same(host(cd), ch, what)
    return ch, cd


SCHEMES = [("google", "symmetric"), ("google", "affine"), ("cambricon", "symmetric")]
if SIZE == "tiny":
    SHAPES = [(7,), (3, 5, 4), (4, 1, 6), (2, 3, 2, 3)]
    BITS = (8, 3, 16)
else:
    SHAPES = [(100003,), (64, 33, 17), (256, 128, 3, 3), (4099, 64), (3, 5, 7, 11, 2)]
    BITS = (8, 4)
LAYOUTS = ["c", "T", "rev", "step", "mixed"]


def make_view(shape, layout, dtype, fill, kind=None):
    """The same strided view on the host and on the device."""
    if layout == "c":
        base, idx, axes = fill(shape), (), None
    elif layout == "T":
        base, idx, axes = fill(shape[::-1]), (), tuple(range(len(shape)))[::-1]
    elif layout == "rev":
        base, idx, axes = fill(shape), (slice(None, None, -1),), None
    elif layout == "step":
        base, idx, axes = fill((shape[0] * 2,) + shape[1:]), (slice(None, None, 2),), None
    else:  # the last axis reversed with step 2: no (outer, channels, inner) view for some axes
        base, idx, axes = fill(shape[:-1] + (shape[-1] * 2,)), (Ellipsis, slice(None, None, -2)), None
    base = base.astype(dtype)
    hx = base[idx]
    if axes is not None:
        hx = hx.transpose(axes)
    dx = put(base, idx, axes, kind)
    assert hx.shape == tuple(dx.shape), (hx.shape, tuple(dx.shape))
    return hx, dx


def normal(shape):
    return rng.standard_normal(shape) * 3


def with_nonfinite(shape):
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    k = max(1, flat.size // 7)
    pos = rng.choice(flat.size, k, replace=False)
    flat[pos] = rng.choice([np.nan, np.inf, -np.inf, -np.nan], k)
    return x


def zeros(shape):
    return np.zeros(shape)


def halves(shape):
    return rng.integers(-300, 301, size=shape) * 0.5 ** 6


def check_ops(hx, dx, dtype, formula, scheme, bits, axis, nonfinite, tag):
    """Observer, then fake_quantization/quantization/quantize/dequantize with its result."""
    per_layer = axis is None
    ax = 0 if per_layer else axis
    ch, cd = both(lambda a: nq.min_max_observer(a, formula, bits, scheme, per_layer, axis=ax,
                                                nonfinite=nonfinite), hx, dx, "observer " + tag)
    if ch is None:
        return
    (s, z), (sd, zd) = ch, cd
    for op in (nq.fake_quantization, nq.quantization, nq.quantize):
        both(lambda a: op(a, *((s, z) if isinstance(a, np.ndarray) else (sd, zd)), formula, bits,
                          scheme, axis=ax), hx, dx, f"{op.__name__} {tag}")
    try:
        q = nq.quantize(hx, s, z, formula, bits, scheme, axis=ax)
    except ValueError:
        return
    T = np.float32 if dtype == np.float16 else dtype
    both(lambda a: nq.dequantize(a, s, z, formula, bits, scheme, axis=ax, dtype=T), q, put(q),
         "dequantize " + tag)


def section_layouts():
    for shape, layout, dtype in itertools.product(SHAPES, LAYOUTS, (np.float32, np.float64, np.float16)):
        if dtype == np.float16 and layout not in ("c", "mixed"):
            continue
        for fname, fill in (("normal", normal), ("zeros", zeros), ("halves", halves)):
            if fname != "normal" and (layout not in ("c", "mixed") or dtype == np.float16):
                continue
            hx, dx = make_view(shape, layout, dtype, fill)
            axes = [None] + sorted({0, len(shape) // 2, len(shape) - 1})
            for (formula, scheme), bits in itertools.product(SCHEMES, BITS if fname == "normal" else (8,)):
                for axis in axes:
                    tag = f"{shape} {layout} {np.dtype(dtype).name} {fname} {formula}/{scheme}/{bits} axis={axis}"
                    check_ops(hx, dx, dtype, formula, scheme, bits, axis, "raise", tag)
            if fname == "normal" and dtype != np.float16:
                # in place (out is the input), and an out with other strides
                s, z = nq.min_max_observer(hx, "google", 4, "affine", False, axis=-1)
                expect = nq.fake_quantization(hx, s, z, "google", 4, "affine", axis=-1)
                dcopy = put(np.ascontiguousarray(hx))
                nq.fake_quantization(dcopy, put(s), put(z), "google", 4, "affine", axis=-1, out=dcopy)
                same(host(dcopy), expect, f"in-place fake {shape} {layout} {np.dtype(dtype).name}")
                out_base = put(np.zeros(hx.shape[::-1], hx.dtype))
                rev = tuple(range(hx.ndim))[::-1]
                out_view = out_base.permute(*rev) if KIND == "torch" else out_base.transpose(rev)
                nq.fake_quantization(dx, put(s), put(z), "google", 4, "affine", axis=-1, out=out_view)
                same(host(out_view), expect, f"transposed out {shape} {layout} {np.dtype(dtype).name}")
                same(host(dx), hx, f"input unchanged {shape} {layout}")
        print(f"  {time.time() - t0:6.1f} s layouts {shape} {layout} {np.dtype(dtype).name}", flush=True)


def section_nonfinite():
    shapes = SHAPES[:3] + [(2, 1000003)] if SIZE != "tiny" else SHAPES
    for shape, layout, dtype in itertools.product(shapes, ("c", "mixed"), (np.float32, np.float64)):
        hx, dx = make_view(shape, layout, dtype, with_nonfinite)
        for axis, nonfinite in itertools.product([None, 0, len(shape) - 1], ("raise", "omit")):
            for formula, scheme in SCHEMES:
                check_ops(hx, dx, dtype, formula, scheme, 8, axis, nonfinite,
                          f"{shape} {layout} {np.dtype(dtype).name} nonfinite {formula}/{scheme} axis={axis} {nonfinite}")
        # one channel without any finite value: an error naming it under "omit"
        bad = np.array(hx)
        bad[(slice(None),) * (len(shape) - 1) + (0,)] = np.nan
        both(lambda a: nq.min_max_observer(a, per_layer_quantization=False, axis=len(shape) - 1,
                                           nonfinite="omit"), bad, put(bad), f"empty channel {shape}")
        both(lambda a: nq.min_max_observer(a, nonfinite="omit"), np.full(shape, np.inf, dtype),
             put(np.full(shape, np.inf, dtype)), f"nothing finite {shape}")
    print(f"  {time.time() - t0:6.1f} s nonfinite", flush=True)


def section_edges():
    # cambricon shifts just below and at powers of two (floor(log2) exact on the GPU)
    for dtype in (np.float32, np.float64):
        e = np.arange(-120, 120, dtype=np.float64) if dtype == np.float32 else np.arange(-1000, 1000, 7.0)
        p = np.ldexp(np.ones_like(e), e.astype(int)).astype(dtype)
        vals = np.stack([p, np.nextafter(p, dtype(0)), np.nextafter(p, dtype(np.inf)),
                         np.nextafter(np.nextafter(p, dtype(0)), dtype(0))], axis=1)
        hx = np.ascontiguousarray(vals.reshape(-1, 1) * np.array([1, -1], dtype)).astype(dtype)
        for bits in (2, 8, 16):
            both(lambda a: nq.min_max_observer(a, "cambricon", bits, per_layer_quantization=False),
                 hx, put(hx), f"cambricon powers of two {np.dtype(dtype).name} bits {bits}")
            mmax = np.ascontiguousarray(hx[:, 0])
            both(lambda a: nq.moving_average_min_max_observer(
                     a, 0, mmax.copy() if isinstance(a, np.ndarray) else put(mmax), 
                     mmax.copy() if isinstance(a, np.ndarray) else put(mmax), False, 0, "cambricon", bits,
                     axis=0), hx, put(hx), f"moving cambricon powers of two {np.dtype(dtype).name} bits {bits}")
        # affine zero points at ties (min / scale = k + 0.5)
        lo = -(np.arange(1, 200, dtype=dtype) + dtype(0.5))
        hx = np.stack([lo, lo + dtype(255)], axis=1).astype(dtype)
        both(lambda a: nq.min_max_observer(a, "google", 8, "affine", False), hx, put(hx),
             f"affine ties {np.dtype(dtype).name}")
        # user shifts for cambricon with fractions and negatives
        shift = np.array([-3.7, -0.5, 0.0, 0.5, 2.9, 7.2], dtype)
        xx = rng.standard_normal((6, 50)).astype(dtype) * 40
        both(lambda a: nq.fake_quantization(a, shift, np.zeros_like(shift), "cambricon", 8), xx, put(xx),
             f"cambricon user shifts {np.dtype(dtype).name}")
        # zero scale per channel
        s = np.array([0.0, 0.1, 0.0], dtype)
        xx = rng.standard_normal((3, 40)).astype(dtype)
        xx[0, 0] = np.nan
        for op in (nq.fake_quantization, nq.quantization):
            both(lambda a: op(a, s, np.zeros_like(s), "google", 8, "affine"), xx, put(xx),
                 f"zero scale {op.__name__} {np.dtype(dtype).name}")
        both(lambda a: nq.quantize(a, s, np.zeros_like(s)), xx, put(xx), "quantize NaN error")
    # 0-d and one-element arrays
    for v in (np.float32(-2.5), np.float64(3.25), np.float16(0.5)):
        hx = np.array(v)
        dx = put(hx)
        check_ops(hx, dx, hx.dtype.type if hx.dtype != np.float16 else np.float16, "google", "affine", 8,
                  None, "raise", f"0-d {hx.dtype}")
    print(f"  {time.time() - t0:6.1f} s edges", flush=True)


def section_moving():
    shape = SHAPES[1]
    for (formula, scheme), dtype, per_channel in itertools.product(SCHEMES, (np.float32, np.float64), (False, True)):
        n = shape[0] if per_channel else 1
        hmax, hmin = np.zeros(n, dtype), np.zeros(n, dtype)
        dmax, dmin = put(hmax), put(hmin)
        for step in range(6):
            hx = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
            if step == 2:
                hx[...] = 0
            args = (step, step != 3, 4, formula, 8, scheme, 0.9)
            ch = nq.moving_average_min_max_observer(hx, args[0], hmax, hmin, *args[1:], axis=0)
            cd = nq.moving_average_min_max_observer(put(hx), args[0], dmax, dmin, *args[1:], axis=0)
            tag = f"moving {formula}/{scheme} {np.dtype(dtype).name} per_channel={per_channel} step {step}"
            same(host(cd[0]), ch[0], tag + " scale")
            same(host(cd[1]), ch[1], tag + " zero_point")
            same(host(dmax), hmax, tag + " moving_max")
            same(host(dmin), hmin, tag + " moving_min")
        obs_h = nq.MovingAverageMinMaxObserver(10, formula, 8, scheme, 0.95,
                                               per_layer_quantization=not per_channel)
        obs_d = nq.MovingAverageMinMaxObserver(10, formula, 8, scheme, 0.95,
                                               per_layer_quantization=not per_channel)
        for step in range(3):
            hx = rng.standard_normal(shape).astype(dtype)
            a, b = obs_h(hx), obs_d(put(hx))
            same(host(b[0]), a[0], f"observer class {formula}/{scheme} per_channel={per_channel} step {step}")
            same(host(obs_d.moving_max), obs_h.moving_max, f"observer class state {formula}/{scheme}")
        state = obs_d.state_dict()
        restored = nq.MovingAverageMinMaxObserver(10, formula, 8, scheme, 0.95)
        restored.load_state_dict(state)
        hx = rng.standard_normal(shape).astype(dtype)
        same(host(restored(put(hx))[0]), obs_h(hx)[0], f"restored observer {formula}/{scheme}")
    print(f"  {time.time() - t0:6.1f} s moving", flush=True)


def section_golden():
    g = np.load(GOLDEN)
    cases = json.loads(str(g["manifest"]))
    n = 0
    for case in cases:
        x = g[case["input"]]
        cid = case["id"]
        if case["op"] == "min_max_observer":
            s, z = nq.min_max_observer(put(x), case["formula"], case["bit"], case["scheme"], case["per_layer"])
            same(host(s), g[f"{cid}/scale"], f"golden {cid} scale", by_value=True)
            same(host(z), g[f"{cid}/zero_point"], f"golden {cid} zero_point", by_value=True)
            for suffix, sname in (("", "scale_used"), ("_tight", "scale_tight_used")):
                if f"{cid}/{sname}" not in g.files:
                    continue
                hargs = (x, g[f"{cid}/{sname}"], g[f"{cid}/zero_point"], case["formula"], case["bit"], case["scheme"])
                dargs = tuple(put(a) for a in hargs[:3]) + hargs[3:]
                for name, op in (("fake", nq.fake_quantization), ("quant", nq.quantization)):
                    r = host(op(*dargs))
                    same(r, g[f"{cid}/{name}{suffix}"], f"golden {cid} {name}{suffix}", by_value=True)
                    same(r, op(*hargs), f"golden {cid} {name}{suffix} GPU vs CPU")
        elif case["op"] == "cambricon_user_shift":
            shift = g[f"{cid}/scale"]
            hargs = (x, shift, np.zeros_like(shift), "cambricon", case["bit"], "symmetric")
            dargs = tuple(put(a) for a in hargs[:3]) + hargs[3:]
            for name, op in (("fake", nq.fake_quantization), ("quant", nq.quantization)):
                r = host(op(*dargs))
                same(r, g[f"{cid}/{name}"], f"golden {cid} {name}", by_value=True)
                same(r, op(*hargs), f"golden {cid} {name} GPU vs CPU")
        else:
            T = np.dtype(case["dtype"])
            mmax, mmin = put(np.zeros(1, T)), put(np.zeros(1, T))
            for i, (step, training) in enumerate(zip(case["steps"], case["training"])):
                s, z = nq.moving_average_min_max_observer(
                    put(x[i]), step, mmax, mmin, training, case["stop_update_after_iters"],
                    case["formula"], case["bit"], case["scheme"], case["momentum"])
                for name, v in (("scale", s), ("zero_point", z), ("moving_max", mmax), ("moving_min", mmin)):
                    same(host(v), g[f"{cid}/{name}"][i:i + 1], f"golden {cid} step {i} {name}", by_value=True)
        n += 1
    print(f"  {time.time() - t0:6.1f} s golden: {n} cases", flush=True)


def section_types():
    """Results come back in the caller's array type, equal to the CPU's."""
    hx = rng.standard_normal((16, 9)).astype(np.float32)
    kinds = ["sim"] if SIM else ["numba", "cupy", "torch"]
    for kind in kinds:
        try:
            dx = put(hx, kind=kind)
        except Exception as e:  # noqa: BLE001 - torch or CuPy missing
            print(f"  types: {kind} skipped ({type(e).__name__}: {e})")
            continue
        s, z = nq.min_max_observer(dx, per_layer_quantization=False)
        f = nq.fake_quantization(dx, s, z)
        want = {"numba": "numba", "sim": "numba", "cupy": "cupy", "torch": "torch"}[kind]
        for name, r in (("scale", s), ("fake", f)):
            checks_ok = type(r).__module__.split(".")[0] == want
            if not checks_ok:
                failures.append(f"types {kind} {name}: got {type(r)}")
                print("FAIL types", kind, name, type(r))
        hs, hz = nq.min_max_observer(hx, per_layer_quantization=False)
        same(host(s), hs, f"types {kind} scale")
        same(host(f), nq.fake_quantization(hx, hs, hz), f"types {kind} fake")
        obs_d, obs_h = nq.MovingAverageMinMaxObserver(), nq.MovingAverageMinMaxObserver()
        obs_d(dx)
        obs_h(hx)
        same(host(obs_d.moving_max), obs_h.moving_max, f"types {kind} moving state")
    print(f"  {time.time() - t0:6.1f} s types", flush=True)


def main():
    """Run the sections named by GQ_SECTIONS; exits 1 on any failure."""
    if SIM:
        _tuning.LAUNCH.update(threads=int(os.environ.get("GQ_THREADS", 32)),
                              max_blocks=int(os.environ.get("GQ_BLOCKS", 2)))
    for name in SECTIONS:
        try:
            globals()["section_" + name]()
        except Exception as e:  # noqa: BLE001 - report, go on with the next section
            import traceback
            traceback.print_exc()
            failures.append(f"section {name} crashed: {type(e).__name__}: {e}")
    print(f"exact: {checks} checks, {len(failures)} failures, {time.time() - t0:.1f} s "
          f"(arrays: {KIND}, size: {SIZE}, LAUNCH={_tuning.LAUNCH})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
