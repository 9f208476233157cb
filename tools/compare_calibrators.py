"""Compare the histogram calibration with modelopt 0.47 and PyTorch on random data.

    python tools/compare_calibrators.py [--cases N] [--modelopt-file PATH]

modelopt: its ``_compute_amax_entropy`` / ``_compute_amax_percentile`` are loaded from
the installed ``modelopt/torch/quantization/calib/histogram.py`` (``--modelopt-file``;
only those two functions are executed, so modelopt's other dependencies are not
needed) and compared with ``compute_amax`` on random histograms.  PyTorch: one batch,
``HistogramObserver(bins=2048, method="l2")`` against ``torch.ao.quantization.
HistogramObserver`` (scale and zero point); several batches: how far PyTorch's lossy,
order-dependent merge lands from ours (which does not depend on the order).
Prints counts of exact agreements; nothing here runs in the test suite.
"""
import argparse
import ast
import os
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numba_quant as nq  # noqa: E402


def _modelopt_functions(path):
    import torch
    from scipy.stats import entropy
    tree = ast.parse(open(path).read())
    names = {"_compute_amax_entropy", "_compute_amax_percentile"}
    ns = {"np": np, "torch": torch, "Counter": Counter, "entropy": entropy}
    body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    exec(compile(ast.Module(body, []), path, "exec"), ns)
    return ns["_compute_amax_entropy"], ns["_compute_amax_percentile"]


def _random_hist(rng, t):
    bins = int(rng.integers(130, 700))
    kind = t % 3
    if kind == 0:
        h = rng.poisson(3000 * np.exp(-np.arange(bins) / rng.uniform(5, 300)))
    elif kind == 1:
        h = rng.poisson(rng.uniform(0, 3, bins))  # sparse: many empty bins, near-ties
    else:
        h, _ = np.histogram(np.abs(rng.standard_t(rng.uniform(1, 5), 5000)), bins)
    return h.astype(np.int32), np.linspace(0, rng.uniform(0.5, 5), bins + 1).astype(np.float32)


def compare_modelopt(path, cases):
    entropy_fn, percentile_fn = _modelopt_functions(path)
    rng = np.random.default_rng(0)
    same = total = 0
    for t in range(cases):
        h, e = _random_hist(rng, t)
        if h.sum() == 0:
            continue
        ref = float(entropy_fn(h.copy(), e, 8, False, 1, 128))
        same += ref == float(nq.compute_amax(h, e, "entropy"))
        p = float(rng.choice([50, 99, 99.9, 99.99, 100]))
        ref = float(percentile_fn(h.copy(), e, p))
        same += ref == float(nq.compute_amax(h, e, "percentile", percentile=p))
        total += 2
    print(f"modelopt 0.47 entropy + percentile: {same}/{total} identical")


def compare_torch(cases):
    import torch
    from torch.ao.quantization import HistogramObserver
    rng = np.random.default_rng(1)
    same = 0
    for t in range(cases):
        x = (rng.standard_t(3, int(rng.integers(100, 20000))) * 10.0 ** rng.uniform(-3, 3))
        x = x.astype(np.float32)
        affine = t % 2 == 0
        kw = (dict(dtype=torch.quint8, qscheme=torch.per_tensor_affine) if affine else
              dict(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
        theirs = HistogramObserver(bins=2048, **kw)
        theirs(torch.from_numpy(x))
        scale, zp = theirs.calculate_qparams()
        ours = nq.HistogramObserver(bins=2048, method="l2")
        ours.observe(x)
        lo, hi = ours.range()
        s, z = _torch_qparams(lo[0], hi[0], affine)
        same += s == np.float32(scale.item()) and z == int(zp.item())
    print(f"PyTorch HistogramObserver, one batch: {same}/{cases} identical scale and zero point")
    gaps, flips = [], 0
    for t in range(cases):
        batches = [(rng.standard_normal(4000) * rng.uniform(0.2, 5)).astype(np.float32)
                   for _ in range(4)]
        scales = []
        for order in (batches, batches[::-1]):
            theirs = HistogramObserver(bins=2048, dtype=torch.qint8,
                                       qscheme=torch.per_tensor_symmetric)
            for b in order:
                theirs(torch.from_numpy(b))
            scales.append(theirs.calculate_qparams()[0].item())
        flips += scales[0] != scales[1]
        ours = nq.HistogramObserver(bins=2048, method="l2")
        for b in batches:
            ours.observe(b)
        lo, hi = ours.range()
        s, _ = _torch_qparams(lo[0], hi[0], False)
        gaps.append(abs(float(s) / scales[0] - 1))
    print(f"PyTorch, 4 batches: batch order changes PyTorch's scale in {flips}/{cases} cases; "
          f"our l2 scale (power-of-two grid, any order) differs from PyTorch's by "
          f"median {np.median(gaps):.2%}, max {np.max(gaps):.2%}")


def _torch_qparams(lo, hi, affine, eps=np.float32(1.1920928955078125e-07)):
    zero = np.float32(0)
    lo, hi = min(np.float32(lo), zero), max(np.float32(hi), zero)
    if affine:
        scale = np.float32(max(np.float32(hi - lo) / np.float32(255), eps))
        return scale, int(np.clip(-np.round(lo / scale), 0, 255))
    return np.float32(max(max(-lo, hi) / np.float32(127.5), eps)), 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--modelopt-file", default=None,
                        help="modelopt's calib/histogram.py (default: the installed one)")
    args = parser.parse_args()
    path = args.modelopt_file
    if path is None:
        import importlib.util
        spec = importlib.util.find_spec("modelopt")
        if spec is not None:
            path = os.path.join(os.path.dirname(spec.origin), "torch", "quantization",
                                "calib", "histogram.py")
    if path and os.path.exists(path):
        compare_modelopt(path, args.cases)
    else:
        print("modelopt not found: pass --modelopt-file")
    compare_torch(args.cases)


if __name__ == "__main__":
    main()
