"""GGUF export: ``numba-quant quantize IN.gguf OUT.gguf --type T`` against llama.cpp's
``llama_model_quantize``, whole runs, same machine, same output bytes.

    python benchmarks/export_gguf.py [--types Q4_K_M,Q8_0] [--models minilm-f32,
        minilm-f16,synthetic] [--synthetic-gb 2] [--repeats 3] [--synthetic-repeats 1]
        [--threads 2] [--work /tmp/nq_export_gguf_bench] [--minilm-dir /work/gguf-ref]
        [--nq-root DIR] [--fresh-cache] [--json PATH]
    python benchmarks/export_gguf.py --models minilm-f32 --types Q8_0 --repeats 1  # quick

Inputs (made once and kept in ``--work``): all-MiniLM-L6-v2 as ``convert_hf_to_gguf.py``
writes it in F32 and F16 (``minilm-f32.gguf``/``minilm-f16.gguf`` of ``--minilm-dir``),
and a synthetic llama-architecture GGUF of about ``--synthetic-gb`` GiB (F16 matrices,
F32 norms; n_embd 4096, n_ff 14336, 32 heads, 8 KV heads, vocab 32000, untied output;
as many layers as come nearest the size: 4 for 2 GiB), written tensor by tensor with
gguf-py's ``GGUFWriter`` (normal values * 0.02 from numpy's generator; the metadata of
``tests/gguf_tiny_model.py`` scaled up, with a vocabulary of the model's size).

Each run is a fresh process doing the whole quantization, imports included:
numba_quant's command (``numba_quant.reporting.cli.main(["quantize", IN, OUT, "--type",
T, "--force", "--threads", N])``, what ``python -m numba_quant quantize`` runs, from this
checkout or the tree ``--nq-root``; ``NUMBA_NUM_THREADS=N``, ``NUMBA_CACHE_DIR`` in
``--work``) and llama.cpp's quantizer through llama-cpp-python's ctypes binding
(``llama_model_quantize`` with ``nthread=N``; ``--llama-python``).  Per run: the
process's wall time, the time the process measured itself after its imports
(``in-process``), its CPU time and its peak resident memory (``wait4``; both tools
memory-map the input, so the pages of the input they touched count).  Per (model, type)
and tool one untimed first run (reported as ``first call``: with ``--fresh-cache`` the
first case's includes numba_quant's compilation), then the repeats with the tools
taking turns (the first in each repeat alternates); the output is deleted and ``sync``
run before each run.  Medians, and the ratio nq/llama of the medians (below 1:
numba_quant faster).  ``identical``: the sha256 of the two tools' last outputs are
equal.  ``largest f32``: the float32 size of the input's largest tensor (a memory
yardstick).
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# benchmarks/gguf.py would hide gguf-py: this folder off the path, timing.py by file.
sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "tests"))

NUMBA_QUANT = """
import json, sys, time
t0 = time.perf_counter()
from numba_quant.reporting.cli import main
t1 = time.perf_counter()
rc = main(["quantize", sys.argv[1], sys.argv[2], "--type", sys.argv[3], "--force",
           "--threads", sys.argv[4]])
t2 = time.perf_counter()
print("BENCH " + json.dumps({"rc": rc, "import_s": t1 - t0, "inproc_s": t2 - t1}))
"""

LLAMA = """
import ctypes, json, sys, time
t0 = time.perf_counter()
import llama_cpp
t1 = time.perf_counter()
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3])
params.nthread = int(sys.argv[4])
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(),
                                    ctypes.byref(params))
t2 = time.perf_counter()
print("BENCH " + json.dumps({"rc": rc, "import_s": t1 - t0, "inproc_s": t2 - t1}))
"""

# The synthetic llama's shape (Llama-3-8B's layer, a 32000-token vocabulary).
N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_VOCAB, N_CTX = 4096, 14336, 32, 8, 32000, 4096


def synthetic_shapes(layers):
    """(name, numpy shape) in convert_hf_to_gguf.py's order."""
    kv = N_EMBD // N_HEAD * N_HEAD_KV
    shapes = [("token_embd.weight", (N_VOCAB, N_EMBD))]
    for i in range(layers):
        p = f"blk.{i}."
        shapes += [(p + "attn_norm.weight", (N_EMBD,)),
                   (p + "attn_q.weight", (N_EMBD, N_EMBD)),
                   (p + "attn_k.weight", (kv, N_EMBD)), (p + "attn_v.weight", (kv, N_EMBD)),
                   (p + "attn_output.weight", (N_EMBD, N_EMBD)),
                   (p + "ffn_norm.weight", (N_EMBD,)),
                   (p + "ffn_gate.weight", (N_FF, N_EMBD)),
                   (p + "ffn_up.weight", (N_FF, N_EMBD)),
                   (p + "ffn_down.weight", (N_EMBD, N_FF))]
    return shapes + [("output_norm.weight", (N_EMBD,)),
                     ("output.weight", (N_VOCAB, N_EMBD))]


def _nbytes(shape):
    return int(np.prod(shape)) * (4 if len(shape) == 1 else 2)


def synthetic_layers(gib):
    """The layer count whose file comes nearest ``gib`` GiB."""
    fixed = sum(_nbytes(s) for _, s in synthetic_shapes(0))
    layer = sum(_nbytes(s) for _, s in synthetic_shapes(1)) - fixed
    return max(1, round((gib * 2**30 - fixed) / layer))


def _add_metadata(writer, layers):
    """tests/gguf_tiny_model.py's keys (llama.cpp's loader reads them) for this shape."""
    import gguf_tiny_model as tiny
    writer.add_type("model")
    writer.add_name("Synthetic Llama Benchmark")
    writer.add_block_count(layers)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_freq_base(tiny.ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(tiny.RMS_EPS)
    writer.add_file_type(tiny.FILE_TYPE["f16"])
    writer.add_vocab_size(N_VOCAB)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    tiny.add_tokenizer(writer, N_VOCAB)


def make_synthetic(path, gib):
    """Write the synthetic F16 llama to ``path`` one tensor at a time (at most one
    tensor, 0.25 GiB, in memory); returns the path."""
    import gguf
    layers = synthetic_layers(gib)
    shapes = synthetic_shapes(layers)
    stage = str(path) + ".part"
    writer = gguf.GGUFWriter(stage, "llama")
    _add_metadata(writer, layers)
    for name, shape in shapes:
        dtype = np.float32 if len(shape) == 1 else np.float16
        writer.add_tensor_info(name, shape, np.dtype(dtype), _nbytes(shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for k, (name, shape) in enumerate(shapes):
        rng = np.random.default_rng(k)
        if len(shape) == 1:
            a = 1 + 0.05 * rng.standard_normal(shape, dtype=np.float32)
        else:
            a = np.empty(shape, np.float16)
            step = max(1, (1 << 22) // shape[1])
            for r0 in range(0, shape[0], step):
                x = rng.standard_normal((min(step, shape[0] - r0), shape[1]),
                                        dtype=np.float32)
                x *= np.float32(0.02)
                a[r0:r0 + len(x)] = x
        writer.write_tensor_data(a)
        del a
    writer.close()
    os.replace(stage, path)
    return path


def largest_tensor_f32(path):
    import gguf
    return max(int(t.n_elements) for t in gguf.GGUFReader(path, "r").tensors) * 4


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def run_once(python, code, inp, out, ftype, threads, env, log, cwd):
    if os.path.exists(out):
        os.remove(out)
    os.sync()
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen([python, "-c", code, inp, out, ftype, str(threads)],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                cwd=cwd)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    lines = [x for x in stdout.splitlines() if x.startswith("BENCH ")]
    if status != 0 or not lines:
        raise RuntimeError(f"{python} on {inp} -> {ftype} failed (status {status}); "
                           f"see {log}")
    inner = json.loads(lines[-1][6:])
    if inner["rc"] != 0:
        raise RuntimeError(f"{python} on {inp} -> {ftype} returned {inner['rc']}; "
                           f"see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, **inner}


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/nq_export_gguf_bench")
    p.add_argument("--minilm-dir", default="/work/gguf-ref")
    p.add_argument("--models", default="minilm-f32,minilm-f16,synthetic")
    p.add_argument("--types", default="Q4_K_M,Q8_0")
    p.add_argument("--synthetic-gb", type=float, default=2.0,
                   help="GiB of the synthetic F16 llama (the nearest layer count)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per tool (MiniLM)")
    p.add_argument("--synthetic-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--python", default="/work/venv/bin/python")
    p.add_argument("--llama-python", default="/work/venv-llama/bin/python")
    p.add_argument("--nq-root", default=str(ROOT),
                   help="the numba_quant tree to run (default this checkout; e.g. a "
                        "'git archive' of a commit): its folder is the child's current "
                        "folder and PYTHONPATH")
    p.add_argument("--fresh-cache", action="store_true",
                   help="empty numba_quant's Numba cache first (the first case's first "
                        "call then compiles)")
    p.add_argument("--max-wait", type=float, default=5.0,
                   help="seconds to wait for idle CPUs before each run")
    p.add_argument("--keep-outputs", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)

    work = Path(args.work)
    (work / "out").mkdir(parents=True, exist_ok=True)
    cache = work / "numba_cache"
    if args.fresh_cache and cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(exist_ok=True)
    nq_root = str(Path(args.nq_root).resolve())
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS=str(args.threads),
               PYTHONPATH=nq_root)

    inputs = {}
    for model in args.models.split(","):
        if model.startswith("minilm-"):
            path = Path(args.minilm_dir) / f"{model}.gguf"
            if not path.exists():
                print(f"{model}: {path} not found; skipped")
                continue
        elif model == "synthetic":
            path = work / f"synthetic-llama-f16-{args.synthetic_gb:g}gib.gguf"
            if not path.exists():
                t = time.perf_counter()
                make_synthetic(path, args.synthetic_gb)
                print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB, "
                      f"{synthetic_layers(args.synthetic_gb)} layers) in "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
        else:
            p.error(f"unknown model {model!r}")
        inputs[model] = str(path)

    import importlib.util
    spec = importlib.util.spec_from_file_location("timing", HERE / "timing.py")
    timing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timing)
    wait_quiet = timing.wait_quiet
    tools = {"nq": (args.python, NUMBA_QUANT), "llama": (args.llama_python, LLAMA)}
    results = []
    for model, inp in inputs.items():
        repeats = args.synthetic_repeats if model == "synthetic" else args.repeats
        for ftype in args.types.split(","):
            case = {"model": model, "type": ftype, "input": inp,
                    "input_bytes": os.path.getsize(inp),
                    "largest_f32_bytes": largest_tensor_f32(inp), "first": {}, "runs": {},
                    "busy": []}
            outs = {t: str(work / "out" / f"{model}-{ftype}-{t}.gguf") for t in tools}
            logs = {t: str(work / "out" / f"{model}-{ftype}-{t}.log") for t in tools}
            for tool, (python, code) in tools.items():       # untimed first calls
                case["first"][tool] = run_once(python, code, inp, outs[tool], ftype,
                                               args.threads, env, logs[tool], nq_root)
                case["runs"][tool] = []
            for i in range(repeats):
                order = list(tools) if i % 2 == 0 else list(tools)[::-1]
                for tool in order:
                    case["busy"].append(wait_quiet(args.max_wait))
                    python, code = tools[tool]
                    r = run_once(python, code, inp, outs[tool], ftype, args.threads, env,
                                 logs[tool], nq_root)
                    case["runs"][tool].append(r)
                    print(f"{model} {ftype} {tool} {i}: " + json.dumps(
                        {k: round(v, 3) for k, v in r.items()}), flush=True)
            case["sha256"] = {t: sha256(outs[t]) for t in tools}
            case["output_bytes"] = {t: os.path.getsize(outs[t]) for t in tools}
            case["identical"] = case["sha256"]["nq"] == case["sha256"]["llama"]
            if not args.keep_outputs:
                for t in tools:
                    os.remove(outs[t])
            results.append(case)

    print(f"\nnumba_quant from {nq_root}; threads {args.threads}; medians of the timed "
          f"runs ({args.repeats} per tool for MiniLM, {args.synthetic_repeats} for the "
          "synthetic model); nq/llama < 1: numba_quant faster; MiB = 2**20 bytes\n")
    print("| input | type | whole run nq | llama | nq/llama | in-process nq | llama | "
          "nq/llama | CPU nq / llama | first call nq / llama | peak RSS nq / llama | "
          "largest f32 | identical |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: "
          "| --- |")
    for c in results:
        n, l = c["runs"]["nq"], c["runs"]["llama"]
        fn, fl = c["first"]["nq"], c["first"]["llama"]
        size = c["input_bytes"]
        label = (f"{c['model']} ({size / 1e6:.0f} MB)" if size < 1e9
                 else f"{c['model']} ({size / 1e9:.2f} GB)")
        print(f"| {label} | {c['type']} | {med(n, 'wall_s'):.2f} s | "
              f"{med(l, 'wall_s'):.2f} s | {med(n, 'wall_s') / med(l, 'wall_s'):.2f} | "
              f"{med(n, 'inproc_s'):.2f} s | {med(l, 'inproc_s'):.2f} s | "
              f"{med(n, 'inproc_s') / med(l, 'inproc_s'):.2f} | "
              f"{med(n, 'cpu_s'):.1f} / {med(l, 'cpu_s'):.1f} s | "
              f"{fn['wall_s']:.2f} / {fl['wall_s']:.2f} s | "
              f"{med(n, 'peak_rss_mib'):.0f} / {med(l, 'peak_rss_mib'):.0f} MiB | "
              f"{c['largest_f32_bytes'] / 2**20:.0f} MiB | "
              f"{'yes' if c['identical'] else 'NO'} |")
    imports = {t: statistics.median(r["import_s"] for c in results for r in c["runs"][t])
               for t in tools}
    busy = [b for c in results for b in c["busy"] if b is not None]
    print(f"\nimports (median over all runs): numba_quant's CLI {imports['nq']:.2f} s, "
          f"llama_cpp {imports['llama']:.2f} s; load average "
          f"{os.getloadavg()[0]:.2f}; busy fraction of other processes before runs: max "
          f"{max(busy, default=float('nan')):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"nq_root": nq_root, "threads": args.threads,
                       "repeats": args.repeats, "synthetic_repeats": args.synthetic_repeats,
                       "cases": results}, f, indent=1)
    return 0 if all(c["identical"] for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
