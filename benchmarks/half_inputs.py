"""Peak memory and time of OneFlow functions on a large bfloat16 / float16 input.

One process per run (the peak resident size is per process).  Prints, per call: the
median and minimum time of the repeats, the peak of numpy's allocations during one call
(tracemalloc, after the timed repeats), and the growth of the process's peak resident
size over what it was with the input made and every kernel compiled (on a slice).  Run it with the numba_quant to measure on
``PYTHONPATH`` (for instance an older commit from ``git archive``):

    python benchmarks/half_inputs.py [--values 1e8] [--repeats 5] [--input torch|ml_dtypes|float16]

For a reference point it also times a float32 copy of the input and the same call on
that copy (what converting the whole input first costs).
"""
import argparse
import resource
import tracemalloc

import numpy as np

from timing import time_one


def _peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _make(n_values, kind, channels=4096):
    """(input, float32 values) of about n_values bfloat16/float16 values, (channels, k)."""
    import ml_dtypes
    k = int(n_values) // channels
    rng = np.random.default_rng(0)
    dtype = np.float16 if kind == "float16" else ml_dtypes.bfloat16
    x = np.empty((channels, k), dtype)
    for start in range(0, channels, 256):   # in pieces: no float32 copy of the whole
        x[start:start + 256] = rng.standard_normal((min(256, channels - start), k),
                                                   dtype=np.float32)
    if kind == "torch":
        import torch
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return x


def _time(call, repeats):
    """(median, min) seconds of ``repeats`` calls; no warm-up: the kernels were compiled
    on a slice, and the first call on the whole input counts like the others."""
    times = time_one(call, repeats, warmup=False)
    return times.median, times.min


def _traced_peak(call):
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=float, default=1e8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input", choices=("torch", "ml_dtypes", "float16"), default="torch")
    args = parser.parse_args()
    import numba_quant as nq
    x = _make(args.values, args.input)
    calls = {
        "min_max_observer per channel (axis 0)":
            lambda a: nq.min_max_observer(a, per_layer_quantization=False, axis=0),
        "min_max_observer per layer": lambda a: nq.min_max_observer(a),
        "fake_quantization per layer": lambda a: nq.fake_quantization(a, 0.05, 0),
    }
    for call in calls.values():   # compiled on a slice of the input, with its chunks
        call(x[:, :1024])
    rss_input = _peak_rss()
    print(f"numba_quant from {nq.__file__}")
    print(f"input: {args.input} {tuple(x.shape)}, {np.prod(x.shape):.3g} values; "
          f"peak RSS with the input made and the kernels compiled {rss_input / 2**20:.0f} MiB")
    for name, one in calls.items():
        def call(one=one):
            return one(x)
        median, best = _time(call, args.repeats)
        traced = _traced_peak(call)
        print(f"{name}: median {median * 1e3:.1f} ms, min {best * 1e3:.1f} ms; "
              f"traced peak {traced / 2**20:.1f} MiB; process peak RSS so far +"
              f"{(_peak_rss() - rss_input) / 2**20:.0f} MiB over the input")
    if args.input != "torch":
        copy_median, _ = _time(lambda: x.astype(np.float32), args.repeats)
        wide = x.astype(np.float32)
        nq.min_max_observer(wide, per_layer_quantization=False, axis=0)
        median, _ = _time(lambda: nq.min_max_observer(wide, per_layer_quantization=False,
                                                      axis=0), args.repeats)
        print(f"reference: float32 copy {copy_median * 1e3:.1f} ms; per-channel observer "
              f"on that copy {median * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
