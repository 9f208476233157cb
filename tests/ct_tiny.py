"""A tiny Llama model directory for the compressed-tensors export tests, made with numpy.

The same directory is built by ``tests/test_export_ct.py`` and by
``tools/make_ct_golden.py`` (which quantizes it with llmcompressor to make the golden
digests); the values come from integer hashing and float64 arithmetic, so they are the
same on every machine.  Planted cases: an all-zero group (the epsilon scale), negative
zeros, values on the rounding ties of int4 and FP4, a large outlier, a 64-row weight
(FP8_BLOCK's padded block) and q/k/v and gate/up pairs of different ranges (NVFP4's fused
global scale).
"""
import json
import os

import numpy as np

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "num_hidden_layers": 1,
    "vocab_size": 64,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
}

# name -> (shape, amplitude)
SHAPES = {
    "lm_head.weight": ((64, 128), 0.05),
    "model.embed_tokens.weight": ((64, 128), 1.0),
    "model.layers.0.input_layernorm.weight": ((128,), 1.0),
    "model.layers.0.mlp.down_proj.weight": ((128, 256), 0.03),
    "model.layers.0.mlp.gate_proj.weight": ((256, 128), 0.08),
    "model.layers.0.mlp.up_proj.weight": ((256, 128), 0.02),
    "model.layers.0.post_attention_layernorm.weight": ((128,), 1.0),
    "model.layers.0.self_attn.k_proj.weight": ((64, 128), 0.2),
    "model.layers.0.self_attn.o_proj.weight": ((128, 128), 0.04),
    "model.layers.0.self_attn.q_proj.weight": ((128, 128), 0.1),
    "model.layers.0.self_attn.v_proj.weight": ((64, 128), 0.01),
    "model.norm.weight": ((128,), 1.0),
}


def _uniform(n, seed):
    """n values in [-1, 1) from a 64-bit multiplicative hash (exact integer arithmetic)."""
    i = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        h = i * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1.0


def float32_weights():
    """name -> float32 array."""
    out = {}
    for k, (name, (shape, amp)) in enumerate(sorted(SHAPES.items())):
        n = int(np.prod(shape))
        u = _uniform(n, k + 1)
        if len(shape) == 1:
            v = 1.0 + 0.25 * u
        else:
            v = amp * u * u * u + 0.3 * amp * u     # heavier tails than uniform
        out[name] = v.astype(np.float32).reshape(shape)
    q = out["model.layers.0.self_attn.q_proj.weight"]
    q[3, :] = 0.0                                     # an all-zero group
    q[4, :128:5] = -0.0                               # negative zeros
    o = out["model.layers.0.self_attn.o_proj.weight"]
    o[5, :] = (np.arange(128) % 16 - 7.5).astype(np.float32)       # int4 ties
    o[6, :] = (np.arange(128) % 13 * 0.25 - 1.5).astype(np.float32)  # FP4 ties
    g = out["model.layers.0.mlp.gate_proj.weight"]
    g[7, 9] = 3.0                                     # an outlier
    v = out["model.layers.0.self_attn.v_proj.weight"]
    v[2, 16:32] = 0.0                                 # an all-zero 16-group (NVFP4)
    return out


def round_bfloat16(a):
    """bfloat16 bit patterns (uint16) of float32 values, to nearest even."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _safetensors_bytes(arrays, codes):
    header, offset, blobs = {}, 0, []
    for name in sorted(arrays):
        data = np.ascontiguousarray(arrays[name]).tobytes()
        header[name] = {"dtype": codes[name], "shape": list(arrays[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def write_model(directory, dtype="float32"):
    """Write the model directory (config.json, model.safetensors, a tokenizer stand-in);
    returns its path."""
    os.makedirs(directory, exist_ok=True)
    weights = float32_weights()
    if dtype == "bfloat16":
        arrays = {k: round_bfloat16(v) for k, v in weights.items()}
        codes = {k: "BF16" for k in arrays}
    else:
        arrays, codes = weights, {k: "F32" for k in weights}
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(_safetensors_bytes(arrays, codes))
    config = dict(CONFIG, torch_dtype=dtype)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 64}, f)
    return directory
