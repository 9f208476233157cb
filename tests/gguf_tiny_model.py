"""A tiny llama-architecture GGUF model and importance matrices for it, made with numpy.

``tools/make_gguf_export_golden.py`` quantizes the model written here with llama.cpp's
own quantizer (``llama_model_quantize``) and records what it wrote in
``tests/data/gguf_export_golden.json``; the tests write the same files again and compare
numba_quant's GGUF exporter with that record.  Needs only numpy and gguf-py (``gguf``);
gguf-py is imported when a file is written, so importing the module needs numpy alone.

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
"""
import os
import struct

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

# The importance matrices leave out this weight, so that "no entry for this tensor,
# quantize it without" is exercised; token_embd.weight is left out as well because
# llama-imatrix never sees it (it is read by row lookup, not by a matrix product).
IMATRIX_LEFT_OUT = ("token_embd.weight", "blk.1.attn_k.weight")
IMATRIX_DATASET = "tiny-calibration.txt"
IMATRIX_CHUNK_COUNT = 10
IMATRIX_CHUNK_SIZE = 512

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


def tiny_llama_tensor(name, shape):
    """The float32 values of one tensor of the tiny model (1-D: norm gains)."""
    if len(shape) == 1:
        return _norm_values(name, shape[0])
    return _weight_values(name, *shape)


def _stored_tensor(values, dtype):
    """(array, raw ggml type or None) as GGUFWriter.add_tensor takes them.

    1-D tensors stay float32 whatever ``dtype`` is, as convert_hf_to_gguf.py keeps norms.
    """
    if values.ndim == 1 or dtype == "f32":
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


def _add_metadata(writer, dtype):
    """The keys llama.cpp reads for a llama model, in convert_hf_to_gguf.py's order."""
    writer.add_type("model")
    writer.add_name("Tiny Llama Synthetic")
    writer.add_block_count(N_LAYER)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(FILE_TYPE[dtype])
    writer.add_vocab_size(N_VOCAB)
    writer.add_rope_dimension_count(HEAD_DIM)
    tokens, scores, types = _vocab()
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
    if dtype not in FILE_TYPE:
        raise ValueError(f"dtype must be one of {sorted(FILE_TYPE)}, not {dtype!r}")
    writer = _gguf().GGUFWriter(os.fspath(path), ARCH)
    _add_metadata(writer, dtype)
    for name, shape in tiny_llama_tensor_shapes():
        array, raw_dtype = _stored_tensor(tiny_llama_tensor(name, shape), dtype)
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    _write(writer)
    return os.fspath(path)


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
    gguf = _gguf()
    writer = gguf.GGUFWriter(os.fspath(path), "imatrix")
    # GGUFWriter always starts with general.architecture; llama-imatrix has no such key.
    del writer.kv_data[0][gguf.Keys.General.ARCHITECTURE]
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", [IMATRIX_DATASET])
    writer.add_uint32("imatrix.chunk_count", IMATRIX_CHUNK_COUNT)
    writer.add_uint32("imatrix.chunk_size", IMATRIX_CHUNK_SIZE)
    for name, (in_sum2, count) in imatrix_entries(model_path_or_tensor_list).items():
        writer.add_tensor(name + ".in_sum2", in_sum2.reshape(1, -1))
        writer.add_tensor(name + ".counts", np.full((1, 1), count, np.float32))
    _write(writer)
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
