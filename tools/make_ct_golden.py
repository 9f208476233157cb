"""Write llmcompressor's data-free compressed-tensors exports of a model directory.

Run with a Python that has llmcompressor 0.14.0.1 (compressed-tensors 0.19, torch,
transformers) installed; numba_quant is not needed.  For every scheme, the model is
loaded from MODEL_DIR in its stored dtype, quantized with
``oneshot(model, recipe=QuantizationModifier(targets="Linear", scheme=SCHEME,
ignore=IGNORE))`` and saved with ``save_pretrained(OUT/SCHEME, save_compressed=True)``.

    python tools/make_ct_golden.py MODEL_DIR OUT --schemes W4A16 W8A16 [--ignore NAME ...]
    python tools/make_ct_golden.py --tiny tests/data/ct_tiny_golden.json

``--tiny`` quantizes the tiny Llama model of ``tests/ct_tiny.py`` (float32 and
bfloat16, every scheme, two ``ignore`` cases) and writes, per case, the SHA-256 of the
input and of the output ``model.safetensors``, each output tensor's dtype, shape and
SHA-256, the ``quantization_config`` and ``recipe.yaml``: what ``tests/test_export_ct.py``
compares numba_quant's output with, byte for byte.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

SCHEMES = ("W8A16", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK", "NVFP4A16",
           "MXFP4A16")


def model_class(model_dir):
    """The class named by config.json's ``architectures`` (what saved the weights)."""
    import transformers
    config = json.loads((Path(model_dir) / "config.json").read_text())
    arch = (config.get("architectures") or [None])[0]
    return getattr(transformers, arch, None) or transformers.AutoModel


def export(model_dir, out_dir, scheme, ignore):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    model = model_class(model_dir).from_pretrained(model_dir, dtype="auto")
    recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=list(ignore))
    oneshot(model=model, recipe=recipe)
    model.save_pretrained(out_dir, save_compressed=True)
    del model


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def digests(path):
    """The file's digest and each tensor's (dtype, shape, digest of its bytes)."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    tensors = {k: [v["dtype"], v["shape"], _sha(data[v["data_offsets"][0]:
                                                   v["data_offsets"][1]])]
               for k, v in header.items()}
    return _sha(raw), tensors


# (dtype, scheme, ignore) of the tiny model's golden cases
TINY_CASES = [(dtype, scheme, []) for dtype in ("float32", "bfloat16")
              for scheme in SCHEMES]
TINY_CASES += [("float32", "W4A16", ["lm_head", "re:.*down_proj"]),
               ("bfloat16", "NVFP4A16", ["re:.*self_attn.*"])]


def make_tiny(out_json):
    import tempfile
    import compressed_tensors
    import llmcompressor
    import torch
    import transformers
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import ct_tiny

    golden = {"about": "llmcompressor's data-free exports of tests/ct_tiny.py's model, "
                       "made by tools/make_ct_golden.py --tiny",
              "versions": {"llmcompressor": llmcompressor.__version__,
                           "compressed_tensors": compressed_tensors.__version__,
                           "torch": torch.__version__,
                           "transformers": transformers.__version__},
              "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, scheme, ignore in TINY_CASES:
            model_dir = ct_tiny.write_model(Path(tmp) / f"in-{dtype}", dtype)
            out = Path(tmp) / "out"
            if out.exists():
                shutil.rmtree(out)
            export(model_dir, out, scheme, ignore)
            file_sha, tensors = digests(out / "model.safetensors")
            config = json.loads((out / "config.json").read_text())
            key = f"{dtype}/{scheme}" + (f"/ignore={','.join(ignore)}" if ignore else "")
            golden["cases"][key] = {
                "dtype": dtype, "scheme": scheme, "ignore": ignore,
                "input_sha256": _sha((Path(model_dir) / "model.safetensors").read_bytes()),
                "file_sha256": file_sha, "tensors": tensors,
                "quantization_config": config["quantization_config"],
                "recipe": (out / "recipe.yaml").read_text()}
            print(key, file_sha[:16])
    Path(out_json).write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    p.add_argument("--ignore", nargs="*", default=[])
    p.add_argument("--tiny", metavar="JSON", help="write the tiny model's golden digests")
    args = p.parse_args(argv)
    if args.tiny:
        make_tiny(args.tiny)
        return 0
    for scheme in args.schemes:
        target = Path(args.out) / scheme
        if target.exists():
            shutil.rmtree(target)
        export(args.model_dir, target, scheme, args.ignore)
        print(scheme, "->", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
