"""Write llmcompressor's data-free compressed-tensors exports of a model directory.

Run with a Python that has llmcompressor 0.14.0.1 (compressed-tensors 0.19, torch,
transformers) installed; numba_quant is not needed.  For every scheme, the model is
loaded from MODEL_DIR in its stored dtype, quantized with
``oneshot(model, recipe=QuantizationModifier(targets="Linear", scheme=SCHEME,
ignore=IGNORE))`` and saved with ``save_pretrained(OUT/SCHEME, save_compressed=True)``.

    python tools/make_ct_golden.py MODEL_DIR OUT --schemes W4A16 W8A16 [--ignore NAME ...]
    python tools/make_ct_golden.py --tiny tests/data/ct_tiny   # the test fixtures

``--tiny`` writes the small synthetic model directories of the tests
(``tests/test_export_ct.py`` builds the same inputs from the same seed; both are checked
to be identical) and their exports for every scheme, in float32 and bfloat16.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SCHEMES = ("W8A16", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK", "NVFP4A16",
           "MXFP4A16")


def export(model_dir, out_dir, scheme, ignore):
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, dtype="auto")
    recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=list(ignore))
    oneshot(model=model, recipe=recipe)
    model.save_pretrained(out_dir, save_compressed=True)
    for extra in Path(model_dir).iterdir():   # what the tests compare: weights and config
        if extra.is_file() and not (Path(out_dir) / extra.name).exists():
            pass
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    p.add_argument("--ignore", nargs="*", default=[])
    args = p.parse_args(argv)
    for scheme in args.schemes:
        target = Path(args.out) / scheme
        if target.exists():
            shutil.rmtree(target)
        export(args.model_dir, target, scheme, args.ignore)
        print(scheme, "->", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
