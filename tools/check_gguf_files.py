#!/usr/bin/env python
"""Compare numba_quant's GGUF quantizers with files that llama.cpp's quantizer wrote.

For each quantized GGUF file (``llama-quantize``, or ``llama_cpp.llama_model_quantize``,
run on ``SOURCE``), every tensor stored in a quantized type (or F16/BF16 converted from a
wider source) is quantized again by :func:`numba_quant.gguf.quantize` from ``SOURCE``'s
tensor of the same name (F32 or F16, as the converter wrote it) and compared byte for
byte with the file's data.  Tensors the file keeps as they are in the source (F32
norms and biases, or F16 in an F16 source) are only checked to be unchanged.  Needs
gguf-py (``pip install gguf``; its ``GGUFReader`` maps the files)::

    python tools/check_gguf_files.py minilm-f32.gguf out/minilm-f32-*.gguf

Prints one line per file (tensors equal / differing) and each differing tensor; exits
non-zero if any differs.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from numba_quant import gguf  # noqa: E402


def tensors(path):
    from gguf import GGUFReader
    return {t.name: t for t in GGUFReader(path).tensors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="the GGUF that was quantized (F32/F16 tensors)")
    ap.add_argument("quantized", nargs="+", help="GGUF files llama.cpp wrote from it")
    args = ap.parse_args()
    source = tensors(args.source)
    failures = 0
    for path in args.quantized:
        equal = differ = kept = 0
        for name, t in tensors(path).items():
            s = source[name]
            data = np.asarray(t.data)
            values = np.asarray(s.data)
            qtype = t.tensor_type.name
            if qtype == s.tensor_type.name:   # stored as in the source
                same = np.array_equal(data.view(np.uint8), values.view(np.uint8))
                kept += same
            else:
                n_per_row = int(t.shape[0])   # (ggml's ne0: values per row)
                q = gguf.quantize(values.reshape(-1, n_per_row), qtype)
                same = np.array_equal(np.ascontiguousarray(q).reshape(-1),
                                      data.view(np.uint8).reshape(-1))
                equal += same
            if not same:
                differ += 1
                print(f"  DIFFER {name} ({s.tensor_type.name} -> {qtype})")
        failures += differ
        print(f"{os.path.basename(path)}: {equal} quantized tensors equal, {kept} kept "
              f"unchanged, {differ} differ", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
