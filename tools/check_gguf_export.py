"""Whole GGUF files written by ``to_gguf`` against the files llama-quantize wrote.

For every ``REF_DIR/<stem>-<FILE_TYPE>[-pure|-noquantout].gguf`` (``<stem>`` the source's
file name without ``.gguf``), writes the source quantized to that file type (``-pure``:
``pure=True``; ``-noquantout``: ``leave_output_tensor=True``) and compares the two files
byte for byte; on a difference, names the first tensors that differ.  Exits 1 if any
file differs.

    python tools/check_gguf_export.py minilm-f32.gguf minilm-f16.gguf --ref-dir out/

The reference files come from llama.cpp's ``llama_model_quantize`` (llama-cpp-python's
binding; ``params.pure`` / ``params.quantize_output_tensor = False`` for the variants).
"""
import argparse
import hashlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from numba_quant.export import to_gguf

VARIANTS = {"pure": {"pure": True}, "noquantout": {"leave_output_tensor": True}}


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tensor_differences(ours, ref):
    import gguf

    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(ref).tensors}
    out = [n for n in b if n not in a or a[n].tensor_type != b[n].tensor_type
           or not np.array_equal(np.asarray(a[n].data), np.asarray(b[n].data))]
    return out + [n for n in a if n not in b]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="+")
    p.add_argument("--ref-dir", required=True)
    args = p.parse_args(argv)
    differ = checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources:
            stem = Path(source).name[:-len(".gguf")]
            pattern = re.compile(re.escape(stem)
                                 + r"-([A-Z0-9_]+?)(?:-(pure|noquantout))?\.gguf")
            for ref in sorted(Path(args.ref_dir).glob(f"{stem}-*.gguf")):
                m = pattern.fullmatch(ref.name)
                if not m:
                    continue
                file_type, variant = m.groups()
                out = Path(tmp) / ref.name
                started = time.perf_counter()
                to_gguf(source, out, file_type, **VARIANTS.get(variant, {}))
                seconds = time.perf_counter() - started
                checked += 1
                if _digest(out) == _digest(ref):
                    print(f"{ref.name}: equal ({seconds:.2f} s)")
                else:
                    differ += 1
                    print(f"{ref.name}: DIFFERS; tensors: "
                          f"{', '.join(_tensor_differences(out, ref)[:5]) or 'none (metadata)'}")
                os.remove(out)
    print(f"{checked} files checked, {differ} differ")
    return 1 if differ or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
