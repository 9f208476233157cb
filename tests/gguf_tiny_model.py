"""Tiny llama-architecture GGUF models and importance matrices for them, made with numpy.

``tools/make_gguf_export_golden.py`` quantizes the models written here with llama.cpp's
own quantizer (``llama_model_quantize``) and records what it wrote in
``tests/data/gguf_export_golden.json``; the tests write the same files again and compare
numba_quant's GGUF exporter with that record.  Needs only numpy and gguf-py (``gguf``);
gguf-py is imported when a file is written, so importing the module needs numpy alone.

The record names each input by a key; :data:`SOURCES` and :data:`IMATRIX_WRITERS` say
which function writes it, so a test can write them all generically::

    paths = {key: write(root / name, dtype) for key, (write, dtype) in SOURCES.items()}
    paths[kind] = write(root / name, paths[source])   # (write, source) = IMATRIX_WRITERS[kind]

* ``f32``, ``f16``: ``write_tiny_llama(path, "f32" | "f16")``, the dense model (below);
* ``moe-f32``: ``write_tiny_moe(path, "f32")``, 4 experts (see :func:`write_tiny_moe`);
* ``moe8-f32``: ``write_tiny_moe8(path, "f32")``, the same with 8 experts;
* ``falcon-f32``: ``write_tiny_falcon(path, "f32")``, a 16-layer Falcon model (the
  Falcon rules, see :func:`write_tiny_falcon`);
* ``llama80-f32``: ``write_tiny_llama80(path, "f32")``, an 80-layer llama that llama.cpp
  takes for a 70B one (the 70B attn_v rule, see :func:`write_tiny_llama80`);
* ``gguf``, ``dat``: ``write_imatrix_gguf`` / ``write_imatrix_dat(path, f32 model)``,
  the dense model's importance matrix in llama-imatrix's GGUF and legacy formats;
* ``moe-gguf``: ``write_imatrix_moe_gguf(path, moe-f32 model)``, the 4-expert model's,
  with one count per expert.

The values come from an integer hash of (tensor name, element index) with wrapping
uint64 arithmetic, turned into float32 by exact integer sums and single float32
products, so the files are the same bit for bit on every machine and numpy version; no
random generator is involved.  Shapes were chosen to reach llama-quantize's less common
paths:

* 8 layers, so the ``use_more_bits`` layer pattern and the "first eighth of the layers"
  rules pick out some layers and not others;
* one KV head for four query heads (``n_gqa = 4``), which turns on the GQA bumps of
  ``attn_v`` for Q2_K and the IQ4 types;
* a feed-forward width of 384, so the rows of ``ffn_down`` (384 wide) are not a multiple
  of 256 and the K, IQ4_XS and ternary types take their 32-block fallback there;
* an untied ``output.weight``, so ``token_embd`` and ``output`` follow different rules;
* one row in eight holds a few outliers, so the quantizers' scale searches matter.

The tensors are written in the order a converter would write them (``token_embd``, then
layer by layer, then ``output_norm`` and ``output``); llama-quantize writes them in
another order, which an exporter that matches it has to reproduce.

The mixture-of-experts models (:func:`write_tiny_moe`, :func:`write_tiny_moe8`) reach
llama-quantize's expert paths: 3-D expert tensors (``ffn_*_exps``, one matrix per expert)
that MXFP4_MOE makes MXFP4, whose layer is parsed from the name, and whose rows take
their own expert's slice of the importance matrix; a router (``ffn_gate_inp``) that is
never quantized; and, with exactly 8 experts, the ``n_expert == 8`` rules for
``attn_k``, ``attn_v`` and ``attn_output``.
"""
import os
import struct
from collections import namedtuple

import numpy as np

ARCH = "llama"
N_LAYER = 8
N_EMBD = 256
N_HEAD = 4
N_HEAD_KV = 1
N_FF = 384
N_VOCAB = 256
N_CTX = 512
HEAD_DIM = N_EMBD // N_HEAD
RMS_EPS = 1e-5
ROPE_FREQ_BASE = 10000.0

# ggml's general.file_type values (llama_ftype) of the unquantized sources.
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32}
# tokenizer.ggml.token_type values (gguf.TokenType).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_BYTE = 1, 2, 3, 6

# Hyper-parameters of one model; n_ff is the experts' width in a MoE model, as llama.cpp's
# llama architecture reads llama.feed_forward_length for both.
Hparams = namedtuple("Hparams", "name n_layer n_head_kv n_ff n_expert n_expert_used")
DENSE = Hparams("Tiny Llama Synthetic", N_LAYER, N_HEAD_KV, N_FF, 0, 0)
# The MoE models have 4 layers (use_more_bits picks layers 2 and 3; the "first eighth"
# rules pick none) and stay below 10 MB in F32, which rules out an expert width of 256:
# * 4 experts: n_head_kv = 4 (n_gqa = 1, so the GQA bumps are off, unlike the dense
#   model); experts 96 wide, so ffn_down_exps rows (96) take the 32-block fallback of
#   the K and IQ4_XS types while gate/up rows (256) keep them;
# * 8 experts: the n_expert == 8 rules; n_head_kv = 1; experts 48 wide, so ffn_down_exps
#   rows fit no block type at all and fall back to F16 (MXFP4 included).
MOE = {
    4: Hparams("Tiny MoE Synthetic", 4, 4, 96, 4, 2),
    8: Hparams("Tiny MoE-8 Synthetic", 4, 1, 48, 8, 2),
}

# Two more models reach llama-quantize's architecture-dependent rules; both have
# n_embd 64 (4 heads of 16, one KV head) to stay below 6 MB in F32, so their 64-wide rows
# take the 32-block fallback of the 256-block types:
# * the 80-layer llama: llama.cpp's model type is 70B (80 layers, n_head != n_head_kv),
#   which bumps attn_v from Q3_K/Q4_K to Q5_K (Q5_1 after the fallback); n_ff 32 keeps
#   it at about 5.4 MB;
# * the Falcon model (arch "falcon", fused attn_qkv, LayerNorm with biases, no gate):
#   16 layers, so the Falcon ffn_down rules' n_layer/16 and n_layer/8 pick layer 0 and
#   layers 0-1; n_ff 256 (4 x n_embd, as Falcon has), so ffn_down rows keep the K types.
LLAMA80 = Hparams("Tiny Llama 70B-shape Synthetic", 80, 1, 32, 0, 0)
LLAMA80_N_EMBD = 64
FALCON_ARCH = "falcon"
FALCON = Hparams("Tiny Falcon Synthetic", 16, 1, 256, 0, 0)
FALCON_N_EMBD = 64
FALCON_N_HEAD = 4
FALCON_NORM_EPS = 1e-5

# The importance matrices leave out this weight, so that "no entry for this tensor,
# quantize it without" is exercised; token_embd.weight is left out as well because
# llama-imatrix never sees it (it is read by row lookup, not by a matrix product).
IMATRIX_LEFT_OUT = ("token_embd.weight", "blk.1.attn_k.weight")
IMATRIX_DATASET = "tiny-calibration.txt"
IMATRIX_CHUNK_COUNT = 10
IMATRIX_CHUNK_SIZE = 512
# The MoE importance matrix leaves out one expert tensor (quantized without), and in one
# expert tensor one expert saw no token (count 0), for which llama-quantize uses 1.0.
MOE_IMATRIX_LEFT_OUT = ("token_embd.weight", "blk.2.ffn_gate_exps.weight")
MOE_IMATRIX_IDLE_EXPERT = ("blk.1.ffn_up_exps.weight", 2)

_MASK64 = (1 << 64) - 1
_GOLDEN64 = np.uint64(0x9E3779B97F4A7C15)
# Standard deviation of the sum of four independent uniform 16-bit integers.
_SUM4_STD = np.float32(37837.23)


def _gguf():
    """gguf-py, imported on first use so that importing this module needs only numpy."""
    import gguf
    return gguf


# --------------------------------------------------------------------------- hashing
def _name_seed(text):
    """64-bit FNV-1a hash of ``text``: a per-tensor seed independent of PYTHONHASHSEED."""
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


def _mix64(x):
    """splitmix64's finaliser on a uint64 array; numpy arrays wrap on overflow."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hashes(seed, n):
    """``n`` well-mixed uint64 values for the elements 0..n-1 of the tensor ``seed``."""
    index = np.arange(1, n + 1, dtype=np.uint64)
    return _mix64(index * _GOLDEN64 + np.uint64(seed))


def _normalish(h):
    """Roughly standard-normal float32 values from hashes.

    The sum of four 16-bit fields is an exact integer below 2**18, so converting it to
    float32 is exact and the only rounding is the final product.
    """
    lanes = [(h >> np.uint64(16 * k)) & np.uint64(0xFFFF) for k in range(4)]
    total = (lanes[0] + lanes[1] + lanes[2] + lanes[3]).astype(np.int64) - 2 * 0xFFFF
    return total.astype(np.float32) * (np.float32(1) / _SUM4_STD)


def _unit_interval(h):
    """float32 values in [0, 1) from the top 24 bits of the hashes (exact conversion)."""
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


# --------------------------------------------------------------------------- values
def _weight_values(name, rows, cols):
    """float32 (rows, cols) weights with std 0.02-0.05 and outliers in one row in eight.

    In an outlier row about one element in 64 is made 12 times larger, so blocks of
    32 or 256 values there usually hold one or more values far above the rest.
    """
    seed = _name_seed(name)
    std = np.float32(0.02 + 0.03 * ((seed >> 20) % 1024) / 1023.0)
    h = _hashes(seed, rows * cols).reshape(rows, cols)
    values = _normalish(h) * std
    row_hash = _mix64(np.arange(rows, dtype=np.uint64) ^ np.uint64(seed))
    outlier_row = (row_hash % np.uint64(8)) == np.uint64(0)
    outlier = outlier_row[:, None] & ((h >> np.uint64(58)) == np.uint64(0))
    return np.where(outlier, values * np.float32(12), values)


def _norm_values(name, n):
    """float32 RMS-norm gains near 1.0 (std 0.05)."""
    return np.float32(1) + _normalish(_hashes(_name_seed(name), n)) * np.float32(0.05)


def _bias_values(name, n):
    """float32 biases near 0 (std 0.02)."""
    return _normalish(_hashes(_name_seed(name), n)) * np.float32(0.02)


def _to_bf16_bits(values):
    """bfloat16 bit patterns (uint16) of finite float32 values, rounded to nearest even."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return rounded.astype(np.uint16)


# --------------------------------------------------------------------------- tensors
def tiny_llama_tensor_shapes():
    """Names and numpy shapes of the model's tensors, in the order they are written.

    Returns
    -------
    list of (str, tuple of int)
        numpy shapes (rows, row length); GGUF's ``ne`` is the reverse.
    """
    n_embd_kv = HEAD_DIM * N_HEAD_KV
    shapes = [("token_embd.weight", (N_VOCAB, N_EMBD))]
    for layer in range(N_LAYER):
        prefix = f"blk.{layer}."
        shapes += [
            (prefix + "attn_norm.weight", (N_EMBD,)),
            (prefix + "attn_q.weight", (N_EMBD, N_EMBD)),
            (prefix + "attn_k.weight", (n_embd_kv, N_EMBD)),
            (prefix + "attn_v.weight", (n_embd_kv, N_EMBD)),
            (prefix + "attn_output.weight", (N_EMBD, N_EMBD)),
            (prefix + "ffn_norm.weight", (N_EMBD,)),
            (prefix + "ffn_gate.weight", (N_FF, N_EMBD)),
            (prefix + "ffn_up.weight", (N_FF, N_EMBD)),
            (prefix + "ffn_down.weight", (N_EMBD, N_FF)),
        ]
    shapes += [("output_norm.weight", (N_EMBD,)), ("output.weight", (N_VOCAB, N_EMBD))]
    return shapes


def tiny_moe_tensor_shapes(n_expert=4):
    """Names and numpy shapes of a MoE model's tensors, in the order they are written.

    Parameters
    ----------
    n_expert : {4, 8}
        Which of the two models (:data:`MOE`).

    Returns
    -------
    list of (str, tuple of int)
        numpy shapes; the expert tensors are (n_expert, rows, row length), GGUF's ``ne``
        [row length, rows, n_expert], and the router ``ffn_gate_inp`` is (n_expert, n_embd).
    """
    hp = MOE[n_expert]
    n_embd_kv = HEAD_DIM * hp.n_head_kv
    shapes = [("token_embd.weight", (N_VOCAB, N_EMBD))]
    for layer in range(hp.n_layer):
        prefix = f"blk.{layer}."
        shapes += [
            (prefix + "attn_norm.weight", (N_EMBD,)),
            (prefix + "attn_q.weight", (N_EMBD, N_EMBD)),
            (prefix + "attn_k.weight", (n_embd_kv, N_EMBD)),
            (prefix + "attn_v.weight", (n_embd_kv, N_EMBD)),
            (prefix + "attn_output.weight", (N_EMBD, N_EMBD)),
            (prefix + "ffn_norm.weight", (N_EMBD,)),
            (prefix + "ffn_gate_inp.weight", (n_expert, N_EMBD)),
            (prefix + "ffn_gate_exps.weight", (n_expert, hp.n_ff, N_EMBD)),
            (prefix + "ffn_up_exps.weight", (n_expert, hp.n_ff, N_EMBD)),
            (prefix + "ffn_down_exps.weight", (n_expert, N_EMBD, hp.n_ff)),
        ]
    shapes += [("output_norm.weight", (N_EMBD,)), ("output.weight", (N_VOCAB, N_EMBD))]
    return shapes


def tiny_llama80_tensor_shapes():
    """Names and numpy shapes of the 80-layer llama's tensors (:data:`LLAMA80`), in the
    order they are written: as :func:`tiny_llama_tensor_shapes` with n_embd 64."""
    hp, n_embd = LLAMA80, LLAMA80_N_EMBD
    n_embd_kv = n_embd // N_HEAD * hp.n_head_kv
    shapes = [("token_embd.weight", (N_VOCAB, n_embd))]
    for layer in range(hp.n_layer):
        prefix = f"blk.{layer}."
        shapes += [
            (prefix + "attn_norm.weight", (n_embd,)),
            (prefix + "attn_q.weight", (n_embd, n_embd)),
            (prefix + "attn_k.weight", (n_embd_kv, n_embd)),
            (prefix + "attn_v.weight", (n_embd_kv, n_embd)),
            (prefix + "attn_output.weight", (n_embd, n_embd)),
            (prefix + "ffn_norm.weight", (n_embd,)),
            (prefix + "ffn_gate.weight", (hp.n_ff, n_embd)),
            (prefix + "ffn_up.weight", (hp.n_ff, n_embd)),
            (prefix + "ffn_down.weight", (n_embd, hp.n_ff)),
        ]
    shapes += [("output_norm.weight", (n_embd,)), ("output.weight", (N_VOCAB, n_embd))]
    return shapes


def tiny_falcon_tensor_shapes():
    """Names and numpy shapes of the Falcon model's tensors (:data:`FALCON`), in the
    order they are written.

    Per layer the LayerNorm ``attn_norm`` (weight and bias), the fused ``attn_qkv``
    (ne [n_embd, n_embd + 2 x n_embd_kv]), ``attn_output``, ``ffn_up`` and ``ffn_down``;
    then ``output_norm`` (weight and bias) and an untied ``output``.
    """
    hp, n_embd = FALCON, FALCON_N_EMBD
    n_embd_kv = n_embd // FALCON_N_HEAD * hp.n_head_kv
    shapes = [("token_embd.weight", (N_VOCAB, n_embd))]
    for layer in range(hp.n_layer):
        prefix = f"blk.{layer}."
        shapes += [
            (prefix + "attn_norm.weight", (n_embd,)),
            (prefix + "attn_norm.bias", (n_embd,)),
            (prefix + "attn_qkv.weight", (n_embd + 2 * n_embd_kv, n_embd)),
            (prefix + "attn_output.weight", (n_embd, n_embd)),
            (prefix + "ffn_up.weight", (hp.n_ff, n_embd)),
            (prefix + "ffn_down.weight", (n_embd, hp.n_ff)),
        ]
    shapes += [("output_norm.weight", (n_embd,)), ("output_norm.bias", (n_embd,)),
               ("output.weight", (N_VOCAB, n_embd))]
    return shapes


def tiny_llama_tensor(name, shape):
    """The float32 values of one tensor of a tiny model (1-D: norm gains).

    A 3-D tensor stacks one matrix per expert, each hashed under its own name
    (``name#e``), so that experts differ in scale and outliers as trained ones do.
    A ``*.bias`` (Falcon's LayerNorm biases) is near 0.
    """
    if name.endswith(".bias"):
        return _bias_values(name, shape[0])
    if len(shape) == 1:
        return _norm_values(name, shape[0])
    if len(shape) == 3:
        return np.stack([_weight_values(f"{name}#{e}", *shape[1:]) for e in range(shape[0])])
    return _weight_values(name, *shape)


def _stored_tensor(values, dtype, keep_f32=False):
    """(array, raw ggml type or None) as GGUFWriter.add_tensor takes them.

    1-D tensors stay float32 whatever ``dtype`` is, as convert_hf_to_gguf.py keeps norms;
    so does a tensor with ``keep_f32`` (the router, which the converter keeps in F32).
    """
    if values.ndim == 1 or dtype == "f32" or keep_f32:
        return values, None
    if dtype == "f16":
        return values.astype(np.float16), None
    return _to_bf16_bits(values), _gguf().GGMLQuantizationType.BF16


# --------------------------------------------------------------------------- vocabulary
def _vocab():
    """(tokens, scores, token types) of a 256-token SentencePiece-style vocabulary.

    Three special tokens, the 128 byte tokens ``<0x00>``..``<0x7F>`` (llama.cpp looks up
    ``<0x0A>`` for the newline token), every printable ASCII character with ``▁`` for the
    space, and common English pieces to fill the rest.  Scores decrease with the index,
    so earlier pieces merge first.
    """
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(128)]
    types += [TOKEN_BYTE] * 128
    pieces = ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]
    pieces += ["\u2581" + w for w in ("t", "a", "s", "w", "h", "the", "he", "hel", "hell",
                                       "hello", "wo", "wor", "worl", "world", "of", "and",
                                       "to", "in", "is", "it")]
    pieces += ["th", "he", "in", "er", "an", "re", "on", "ll", "lo", "or"]
    tokens += pieces[: N_VOCAB - len(tokens)]
    types += [TOKEN_NORMAL] * (N_VOCAB - len(types))
    assert len(tokens) == N_VOCAB and len(set(tokens)) == N_VOCAB
    scores = [0.0 if t != TOKEN_NORMAL else -float(i) for i, t in enumerate(types)]
    return tokens, scores, types


def _add_metadata(writer, dtype, hp=DENSE, n_embd=N_EMBD, n_head=N_HEAD):
    """The keys llama.cpp reads for a llama model, in convert_hf_to_gguf.py's order.

    A MoE model (``hp.n_expert`` > 0) has ``llama.expert_count`` and
    ``llama.expert_used_count`` after the norm epsilon, where the converter puts them.
    ``n_embd`` and ``n_head`` differ from the defaults only for the 80-layer model.
    """
    writer.add_type("model")
    writer.add_name(hp.name)
    writer.add_block_count(hp.n_layer)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    if hp.n_expert:
        writer.add_expert_count(hp.n_expert)
        writer.add_expert_used_count(hp.n_expert_used)
    writer.add_file_type(FILE_TYPE[dtype])
    writer.add_vocab_size(N_VOCAB)
    writer.add_rope_dimension_count(n_embd // n_head)
    add_tokenizer(writer)


def add_tokenizer(writer, n_vocab=None):
    """The vocabulary keys (:func:`_vocab`, SentencePiece-style) and, last, the
    quantization version, as every tiny model has them; with ``n_vocab``, the vocabulary
    is padded to that many tokens (``tok0``, ``tok1``, ... with falling scores), as a
    larger model's needs."""
    tokens, scores, types = _vocab()
    extra = 0 if n_vocab is None else n_vocab - len(tokens)
    tokens = tokens + [f"tok{i}" for i in range(extra)]
    scores = scores + [-float(len(scores) + i) for i in range(extra)]
    types = types + [TOKEN_NORMAL] * extra
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # Written last, as the converter does; llama-quantize rewrites it and file_type and
    # thereby moves both to the end of its key list.
    writer.add_quantization_version(_gguf().GGML_QUANT_VERSION)


def _write(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_model(path, dtype, arch, add_metadata, shapes, keep_f32=lambda name: False):
    """Write a model: its keys (``add_metadata(writer)``), then each (name, shape) of
    ``shapes`` with its values, stored as ``dtype`` (1-D tensors and ``keep_f32`` names
    stay float32)."""
    if dtype not in FILE_TYPE:
        raise ValueError(f"dtype must be one of {sorted(FILE_TYPE)}, not {dtype!r}")
    writer = _gguf().GGUFWriter(os.fspath(path), arch)
    add_metadata(writer)
    for name, shape in shapes:
        array, raw_dtype = _stored_tensor(tiny_llama_tensor(name, shape), dtype,
                                          keep_f32=keep_f32(name))
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    _write(writer)
    return os.fspath(path)


def write_tiny_llama(path, dtype="f32"):
    """Write the tiny llama model to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The GGUF file to write.
    dtype : {"f32", "f16", "bf16"}
        Storage type of the 2-D weights; norms are float32 in every case.

    Returns
    -------
    str
        ``path`` as a string.
    """
    return _write_model(path, dtype, ARCH, lambda w: _add_metadata(w, dtype),
                        tiny_llama_tensor_shapes())


def write_tiny_moe(path, dtype="f32", n_expert=4):
    """Write a tiny llama-architecture mixture-of-experts model to ``path``.

    4 layers, n_embd 256, 4 heads, the dense model's vocabulary, untied ``output``; per
    layer a router ``ffn_gate_inp`` (kept F32, as the converter and llama-quantize keep
    it) and the experts ``ffn_gate_exps``, ``ffn_up_exps`` (ne [256, n_ff, n_expert]) and
    ``ffn_down_exps`` (ne [n_ff, 256, n_expert]); 2 experts used per token.  With 4
    experts: n_head_kv 4, n_ff 96 (about 9.5 MB in F32); with 8: n_head_kv 1, n_ff 48
    (about 7.9 MB).  See :data:`MOE`.

    Parameters
    ----------
    path : str or os.PathLike
        The GGUF file to write.
    dtype : {"f32", "f16", "bf16"}
        Storage type of the 2-D and 3-D weights; norms and the router stay float32.
    n_expert : {4, 8}
        Which of the two models.

    Returns
    -------
    str
        ``path`` as a string.
    """
    if n_expert not in MOE:
        raise ValueError(f"n_expert must be one of {sorted(MOE)}, not {n_expert!r}")
    return _write_model(path, dtype, ARCH,
                        lambda w: _add_metadata(w, dtype, MOE[n_expert]),
                        tiny_moe_tensor_shapes(n_expert),
                        keep_f32=lambda name: name.endswith("ffn_gate_inp.weight"))


def write_tiny_moe8(path, dtype="f32"):
    """Write the 8-expert model: ``write_tiny_moe(path, dtype, n_expert=8)``."""
    return write_tiny_moe(path, dtype, n_expert=8)


def write_tiny_llama80(path, dtype="f32"):
    """Write the 80-layer llama (:data:`LLAMA80`, :func:`tiny_llama80_tensor_shapes`).

    80 layers, n_embd 64, 4 heads of 16 and one KV head, n_ff 32, the dense model's
    vocabulary, untied ``output``; about 5.4 MB in F32.  llama.cpp gives an 80-layer
    llama with n_head != n_head_kv the model type 70B, whose attn_v rule this reaches.

    Parameters
    ----------
    path : str or os.PathLike
        The GGUF file to write.
    dtype : {"f32", "f16", "bf16"}
        Storage type of the 2-D weights; norms are float32 in every case.

    Returns
    -------
    str
        ``path`` as a string.
    """
    return _write_model(path, dtype, ARCH,
                        lambda w: _add_metadata(w, dtype, LLAMA80, n_embd=LLAMA80_N_EMBD),
                        tiny_llama80_tensor_shapes())


def _add_falcon_metadata(writer, dtype):
    """The keys of a Falcon model in convert_hf_to_gguf.py's order (context length,
    tensor data layout, widths, block count, heads, LayerNorm epsilon, file type), then
    the dense model's vocabulary keys.  No rope dimension count: llama.cpp takes the
    head size (n_embd / n_head), as it must be for Falcon."""
    hp = FALCON
    writer.add_type("model")
    writer.add_name(hp.name)
    writer.add_context_length(N_CTX)
    writer.add_tensor_data_layout("jploski")
    writer.add_embedding_length(FALCON_N_EMBD)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layer)
    writer.add_head_count(FALCON_N_HEAD)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_layer_norm_eps(FALCON_NORM_EPS)
    writer.add_file_type(FILE_TYPE[dtype])
    writer.add_vocab_size(N_VOCAB)
    add_tokenizer(writer)


def write_tiny_falcon(path, dtype="f32"):
    """Write the tiny Falcon model (:data:`FALCON`, :func:`tiny_falcon_tensor_shapes`).

    Architecture "falcon" (Falcon-7B's layout: one LayerNorm per layer, fused QKV with
    one KV head, parallel attention and MLP), 16 layers, n_embd 64, 4 heads, n_ff 256,
    the dense model's vocabulary, untied ``output``; about 2.9 MB in F32.

    Parameters
    ----------
    path : str or os.PathLike
        The GGUF file to write.
    dtype : {"f32", "f16", "bf16"}
        Storage type of the 2-D weights; norm weights and biases are float32.

    Returns
    -------
    str
        ``path`` as a string.
    """
    return _write_model(path, dtype, FALCON_ARCH,
                        lambda w: _add_falcon_metadata(w, dtype),
                        tiny_falcon_tensor_shapes())


# --------------------------------------------------------------------------- imatrix
def _matrix_row_lengths(model_path_or_tensor_list):
    """[(name, row length)] of the 2-D ``*.weight`` tensors of a GGUF file or list.

    A list holds (name, numpy shape) pairs such as :func:`tiny_llama_tensor_shapes`
    returns; a path is read with gguf-py (whose shapes are GGUF's ``ne``, row length first).
    """
    if isinstance(model_path_or_tensor_list, (str, os.PathLike)):
        reader = _gguf().GGUFReader(os.fspath(model_path_or_tensor_list))
        named = [(t.name, [int(n) for n in t.shape]) for t in reader.tensors]
        pairs = [(name, ne[0]) for name, ne in named if len(ne) == 2]
    else:
        pairs = [(name, shape[-1]) for name, shape in model_path_or_tensor_list
                 if len(shape) == 2]
    return [(name, n) for name, n in pairs if name.endswith(".weight")]


def imatrix_entries(model_path_or_tensor_list=None):
    """The importance-matrix entries of the model: name -> (in_sum2, count).

    ``in_sum2`` (float32, one value per input column) is ``count`` times a mean square
    activation between 0.02 and 1.5, with every 37th column 30 times hotter; ``count``
    is the number of tokens seen.  Counts differ a little between tensors (a real dense
    model gives each the same) so that dividing by another entry's count shows up.

    Parameters
    ----------
    model_path_or_tensor_list : str, os.PathLike or list, optional
        A GGUF model, or (name, numpy shape) pairs; default the tiny model's tensors.

    Returns
    -------
    dict of str to (numpy.ndarray, int)
        Sorted by name, as llama-imatrix stores them; :data:`IMATRIX_LEFT_OUT` absent.
    """
    if model_path_or_tensor_list is None:
        model_path_or_tensor_list = tiny_llama_tensor_shapes()
    entries = {}
    for k, (name, n) in enumerate(sorted(_matrix_row_lengths(model_path_or_tensor_list))):
        if name in IMATRIX_LEFT_OUT:
            continue
        count = IMATRIX_CHUNK_COUNT * IMATRIX_CHUNK_SIZE - 64 * (k % 3)
        h = _hashes(_name_seed(name + ".in_sum2"), n)
        mean_square = np.float32(0.02) + _unit_interval(h) * np.float32(1.48)
        hot = (np.arange(n) % 37) == 5
        mean_square = np.where(hot, mean_square * np.float32(30), mean_square)
        entries[name] = (mean_square * np.float32(count), count)
    return entries


def write_imatrix_gguf(path, model_path_or_tensor_list=None):
    """Write an importance matrix in llama-imatrix's GGUF format.

    Layout: keys ``general.type`` = "imatrix", ``imatrix.datasets`` (array of strings),
    ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (uint32); per weight, in name
    order, the F32 tensors ``<name>.in_sum2`` (ne = [row length, 1]: sums of squared
    activations) and ``<name>.counts`` (ne = [1, 1]: tokens seen).  llama-quantize uses
    ``in_sum2 / counts``.  No ``general.architecture`` key, as llama-imatrix writes none.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (llama-imatrix's name for it ends in ``.gguf``).
    model_path_or_tensor_list : str, os.PathLike or list, optional
        See :func:`imatrix_entries`.

    Returns
    -------
    str
        ``path`` as a string.
    """
    writer = _imatrix_writer(path)
    entries = {name: (in_sum2, np.full(1, count, np.float32))
               for name, (in_sum2, count) in imatrix_entries(model_path_or_tensor_list).items()}
    _write_imatrix_tensors(writer, entries)
    return os.fspath(path)


def _imatrix_writer(path):
    """A GGUFWriter with llama-imatrix's keys (and no general.architecture)."""
    gguf = _gguf()
    writer = gguf.GGUFWriter(os.fspath(path), "imatrix")
    # GGUFWriter always starts with general.architecture; llama-imatrix has no such key.
    del writer.kv_data[0][gguf.Keys.General.ARCHITECTURE]
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", [IMATRIX_DATASET])
    writer.add_uint32("imatrix.chunk_count", IMATRIX_CHUNK_COUNT)
    writer.add_uint32("imatrix.chunk_size", IMATRIX_CHUNK_SIZE)
    return writer


def _write_imatrix_tensors(writer, entries):
    """Add ``<name>.in_sum2`` (ne [row length, n_mat]) and ``<name>.counts`` (ne [1,
    n_mat]) per entry, as llama-imatrix stores them, and write the file."""
    for name, (in_sum2, counts) in entries.items():
        writer.add_tensor(name + ".in_sum2", in_sum2.reshape(counts.size, -1))
        writer.add_tensor(name + ".counts", counts.reshape(-1, 1))
    _write(writer)


# --------------------------------------------------------------------------- MoE imatrix
def _weight_layouts(model_path_or_tensor_list):
    """[(name, row length, number of matrices)] of the 2-D and 3-D ``*.weight`` tensors.

    A 3-D tensor holds one matrix per expert (GGUF ne [row length, rows, n_expert]);
    a list holds (name, numpy shape) pairs as :func:`tiny_moe_tensor_shapes` returns.
    """
    if isinstance(model_path_or_tensor_list, (str, os.PathLike)):
        reader = _gguf().GGUFReader(os.fspath(model_path_or_tensor_list))
        ne_list = [(t.name, [int(n) for n in t.shape]) for t in reader.tensors]
    else:
        ne_list = [(name, list(shape)[::-1]) for name, shape in model_path_or_tensor_list]
    return [(name, ne[0], ne[2] if len(ne) == 3 else 1) for name, ne in ne_list
            if len(ne) in (2, 3) and name.endswith(".weight")]


def _expert_counts(layer, n_expert):
    """Tokens each expert of ``layer`` saw: a hash-weighted share of the tokens times 2.

    Every token of the calibration set (chunk count x chunk size) goes to two experts,
    and the router sends it to all three expert tensors of its layer, so they share these
    counts.  Integer arithmetic throughout; the shares lie between about 1/2 and 2 times
    the mean, and no expert is given more tokens than there are.
    """
    tokens = IMATRIX_CHUNK_COUNT * IMATRIX_CHUNK_SIZE
    h = _hashes(_name_seed(f"blk.{layer}.expert_counts"), n_expert)
    raw = [1024 + int(v >> np.uint64(54)) for v in h]
    return [2 * tokens * r // sum(raw) for r in raw]


def moe_imatrix_entries(model_path_or_tensor_list=None):
    """The importance-matrix entries of a MoE model: name -> (in_sum2, counts).

    As :func:`imatrix_entries` for 2-D weights (one count).  An expert tensor has one
    count per expert (:func:`_expert_counts`) and ``in_sum2`` of length row length x
    n_expert, expert by expert, each slice its count times a mean square activation
    (every 37th column 30 times hotter, at an offset that differs between experts).  In
    :data:`MOE_IMATRIX_IDLE_EXPERT` one expert saw no token: count 0 and sums 0, as
    llama-imatrix would store it.

    Parameters
    ----------
    model_path_or_tensor_list : str, os.PathLike or list, optional
        A GGUF model, or (name, numpy shape) pairs; default the 4-expert model's tensors.

    Returns
    -------
    dict of str to (numpy.ndarray, numpy.ndarray)
        float32 ``in_sum2`` (1-D) and float32 ``counts`` (whole numbers), sorted by name;
        :data:`MOE_IMATRIX_LEFT_OUT` absent.
    """
    if model_path_or_tensor_list is None:
        model_path_or_tensor_list = tiny_moe_tensor_shapes()
    idle_name, idle_expert = MOE_IMATRIX_IDLE_EXPERT
    entries = {}
    for k, (name, n, n_mat) in enumerate(sorted(_weight_layouts(model_path_or_tensor_list))):
        if name in MOE_IMATRIX_LEFT_OUT:
            continue
        if n_mat == 1:
            counts = [IMATRIX_CHUNK_COUNT * IMATRIX_CHUNK_SIZE - 64 * (k % 3)]
        else:
            counts = _expert_counts(int(name.split(".")[1]), n_mat)
            if name == idle_name:
                counts[idle_expert] = 0
        counts = np.array(counts, np.float32)
        h = _hashes(_name_seed(name + ".in_sum2"), n * n_mat).reshape(n_mat, n)
        mean_square = np.float32(0.02) + _unit_interval(h) * np.float32(1.48)
        hot = (np.arange(n)[None, :] % 37) == ((5 + 11 * np.arange(n_mat)) % 37)[:, None]
        mean_square = np.where(hot, mean_square * np.float32(30), mean_square)
        entries[name] = ((mean_square * counts[:, None]).reshape(-1), counts)
    return entries


def write_imatrix_moe_gguf(path, model_path_or_tensor_list=None):
    """Write a MoE model's importance matrix in llama-imatrix's GGUF format.

    The keys of :func:`write_imatrix_gguf`; per weight, in name order, ``<name>.in_sum2``
    (F32, ne [row length, n_mat]) and ``<name>.counts`` (F32, ne [1, n_mat]), where n_mat
    is 1 for a 2-D weight and n_expert for an expert tensor (its sums expert by expert).
    llama-quantize uses ``in_sum2[e] / counts[e]`` for expert e's rows, or 1.0 where
    ``counts[e]`` is 0 (see :func:`moe_imatrix_entries`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    model_path_or_tensor_list : str, os.PathLike or list, optional
        See :func:`moe_imatrix_entries`.

    Returns
    -------
    str
        ``path`` as a string.
    """
    writer = _imatrix_writer(path)
    _write_imatrix_tensors(writer, moe_imatrix_entries(model_path_or_tensor_list))
    return os.fspath(path)


def write_imatrix_dat(path, model_path_or_tensor_list=None):
    """Write the same importance matrix in llama-imatrix's legacy ``.dat`` format.

    Little-endian: int32 number of entries; per entry (in name order) int32 name length,
    the name's bytes, int32 ``ncall``, int32 number of values and that many float32
    values ``(in_sum2 / count) * ncall``, where ``ncall`` = ceil(count / chunk size); then
    int32 chunk count, int32 dataset name length and the dataset name.  llama-quantize
    uses ``value / ncall``, which is close to, but not always bit-equal to, the GGUF
    file's ``in_sum2 / count``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    model_path_or_tensor_list : str, os.PathLike or list, optional
        See :func:`imatrix_entries`.

    Returns
    -------
    str
        ``path`` as a string.
    """
    entries = imatrix_entries(model_path_or_tensor_list)
    chunks = [struct.pack("<i", len(entries))]
    for name, (in_sum2, count) in entries.items():
        ncall = -(-count // IMATRIX_CHUNK_SIZE)
        values = (in_sum2 / np.float32(count)) * np.float32(ncall)
        encoded = name.encode("utf-8")
        chunks.append(struct.pack("<i", len(encoded)) + encoded)
        chunks.append(struct.pack("<ii", ncall, values.size))
        chunks.append(values.astype("<f4").tobytes())
    dataset = IMATRIX_DATASET.encode("utf-8")
    chunks.append(struct.pack("<ii", IMATRIX_CHUNK_COUNT, len(dataset)) + dataset)
    with open(path, "wb") as fh:
        fh.write(b"".join(chunks))
    return os.fspath(path)


# --------------------------------------------------------------------------- registry
# The golden record's input keys -> (writer, dtype): ``write(path, dtype)`` writes it.
SOURCES = {
    "f32": (write_tiny_llama, "f32"),
    "f16": (write_tiny_llama, "f16"),
    "moe-f32": (write_tiny_moe, "f32"),
    "moe8-f32": (write_tiny_moe8, "f32"),
    "falcon-f32": (write_tiny_falcon, "f32"),
    "llama80-f32": (write_tiny_llama80, "f32"),
}
# The record's importance-matrix keys -> (writer, source key of the model it is for):
# ``write(path, path of that source)`` writes it.
IMATRIX_WRITERS = {
    "gguf": (write_imatrix_gguf, "f32"),
    "dat": (write_imatrix_dat, "f32"),
    "moe-gguf": (write_imatrix_moe_gguf, "moe-f32"),
}
