"""Which GGUF type each tensor of a model gets: llama-quantize's choices, restated.

llama.cpp's ``llama-quantize`` takes a *file type* (``Q4_K_M``, ``Q8_0``, ...) and gives
every tensor of the model a ggml type of its own:

1. only tensors of two or more dimensions whose name ends in ``weight`` are converted,
   and never norms, positional and token-type embeddings, MoE routers and a few
   architecture-specific small tensors (:func:`allows_quantization`); the others are
   copied as they are;
2. ``--token-embedding-type`` and ``--output-tensor-type`` decide ``token_embd.weight``
   and ``output.weight`` outright;
3. otherwise the file type's default type, replaced by the first ``--tensor-type``
   pattern that matches the name, else (unless ``--pure``) by the mixture rules of
   the file type (:func:`_mixture_type`): more bits for the output tensor, for some
   layers' ``attn_v`` and ``ffn_down`` (chosen by a layer counter), for models with
   grouped-query attention or eight experts;
4. a type whose block does not divide the row length falls back one step
   (:func:`fallback_type`).

The layer counters depend on the order of the tensors, which llama-quantize takes from
its loader: tensors outside ``blk.N.`` first, then by layer number, each group sorted
by name (:func:`tensor_order`).  :func:`plan` walks the tensors in that order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from numba_quant.export.gguf_container import TYPE_SIZES

__all__ = ["TOKEN_EMBEDDINGS", "FileType", "FILE_TYPES", "file_type_named", "ModelFacts", "PlanOptions",
           "plan", "tensor_order", "fallback_type", "allows_quantization",
           "requires_imatrix", "BLOCK_SIZES", "ggml_type_named", "GGML_IDS",
           "QUANTIZATION_VERSION"]

#: ``general.quantization_version`` of the files written (ggml's GGML_QNT_VERSION).
QUANTIZATION_VERSION = 2

#: ggml's type ids of the types the rules name.
GGML_IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
            "Q8_1": 9, "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14,
            "Q8_K": 15, "IQ2_XXS": 16, "IQ2_XS": 17, "IQ3_XXS": 18, "IQ1_S": 19,
            "IQ4_NL": 20, "IQ3_S": 21, "IQ2_S": 22, "IQ4_XS": 23, "I8": 24, "I16": 25,
            "I32": 26, "I64": 27, "F64": 28, "IQ1_M": 29, "BF16": 30, "TQ1_0": 34,
            "TQ2_0": 35, "MXFP4": 39}
_BY_ID = {v: k for k, v in GGML_IDS.items()}
#: Values per block of each, from the container's table of ggml's type sizes.
BLOCK_SIZES = {name: TYPE_SIZES[i][0] for name, i in GGML_IDS.items()}
_UNQUANTIZED = ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64")


def ggml_type_named(name) -> str:
    """The canonical name of a ggml type given by name (any case) or id."""
    if isinstance(name, str):
        key = name.upper()
        if key in GGML_IDS:
            return key
    elif not isinstance(name, bool) and int(name) in _BY_ID:
        return _BY_ID[int(name)]
    raise ValueError(f"unknown ggml type {name!r}; known: {', '.join(GGML_IDS)}")


@dataclass(frozen=True)
class FileType:
    """One of llama-quantize's file types: its name, ``llama_ftype`` value (stored as
    ``general.file_type``) and the type its tensors get by default."""
    name: str
    ftype: int
    default_type: str


FILE_TYPES = {ft.name: ft for ft in (
    FileType("F32", 0, "F32"), FileType("F16", 1, "F16"), FileType("BF16", 32, "BF16"),
    FileType("Q4_0", 2, "Q4_0"), FileType("Q4_1", 3, "Q4_1"), FileType("Q5_0", 8, "Q5_0"),
    FileType("Q5_1", 9, "Q5_1"), FileType("Q8_0", 7, "Q8_0"),
    FileType("Q2_K", 10, "Q2_K"), FileType("Q2_K_S", 21, "Q2_K"),
    FileType("Q3_K_S", 11, "Q3_K"), FileType("Q3_K_M", 12, "Q3_K"),
    FileType("Q3_K_L", 13, "Q3_K"), FileType("Q4_K_S", 14, "Q4_K"),
    FileType("Q4_K_M", 15, "Q4_K"), FileType("Q5_K_S", 16, "Q5_K"),
    FileType("Q5_K_M", 17, "Q5_K"), FileType("Q6_K", 18, "Q6_K"),
    FileType("IQ4_NL", 25, "IQ4_NL"), FileType("IQ4_XS", 30, "IQ4_XS"),
    FileType("TQ1_0", 36, "TQ1_0"), FileType("TQ2_0", 37, "TQ2_0"),
    FileType("MXFP4_MOE", 38, "MXFP4"),
)}
# llama-quantize's short names.
_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
# File types of llama-quantize whose types numba_quant does not compute.
_NOT_SUPPORTED = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S",
                  "IQ3_M", "IQ1_S", "IQ1_M", "Q1_0", "Q2_0", "COPY")


def file_type_named(name) -> FileType:
    """The :class:`FileType` called ``name`` (any case; ``Q4_K`` is ``Q4_K_M``, as in
    llama-quantize), or a ValueError listing the known ones."""
    key = str(name).upper()
    key = _ALIASES.get(key, key)
    if key in FILE_TYPES:
        return FILE_TYPES[key]
    known = ", ".join(FILE_TYPES)
    if key in _NOT_SUPPORTED:
        raise ValueError(f"file type {name!r}: its tensor types (IQ1/IQ2/IQ3) are not "
                         f"implemented; supported file types: {known}")
    raise ValueError(f"unknown file type {name!r}; supported file types: {known}")


@dataclass(frozen=True)
class ModelFacts:
    """What the rules read from the model's metadata."""
    arch: str = ""
    n_layer: int = 0          # {arch}.block_count
    n_gqa: int = 1            # heads per key/value head in layer 0 (0 without kv heads)
    n_expert: int = 0         # {arch}.expert_count
    is_70b: bool = False      # llama.cpp's 70B model type (80 layers, see from_metadata)

    @classmethod
    def from_metadata(cls, values):
        """From a ``{key: value}`` of the model's GGUF metadata."""
        arch = str(values.get("general.architecture", ""))

        def first(key, default):
            v = values.get(f"{arch}.{key}", default)
            if hasattr(v, "__len__") and not isinstance(v, str):   # per-layer values
                v = v[0] if len(v) else default
            return int(v)

        n_layer = first("block_count", 0)
        n_head = first("attention.head_count", 0)
        n_head_kv = first("attention.head_count_kv", n_head)
        n_gqa = n_head // n_head_kv if n_head_kv else 0
        # llama.cpp names an 80-layer model 70B for these architectures (a llama only
        # with grouped-query attention); the type matters to attn_v's rule.
        is_70b = n_layer == 80 and (arch in ("deci", "olmo", "qwen2")
                                    or (arch == "llama" and n_head != n_head_kv))
        return cls(arch, n_layer, n_gqa, first("expert_count", 0), is_70b)


@dataclass(frozen=True)
class PlanOptions:
    """llama-quantize's options that change types (see :func:`plan`)."""
    pure: bool = False
    quantize_output_tensor: bool = True
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    tensor_types: tuple = ()          # ((compiled regex, type name), ...), first wins
    has_imatrix: bool = False


# ------------------------------------------------------------------ names and order

_LAYER = re.compile(r"blk\.\s*([+-]?\d+)")


def tensor_order(name):
    """llama-quantize's sort key: the layer number of a ``blk.N.`` name (-1 for the
    others), then the name."""
    m = _LAYER.match(name)
    return (int(m.group(1)) if m else -1, name)


#: The token-embedding tensors (named so by every architecture).
TOKEN_EMBEDDINGS = ("token_embd.weight", "per_layer_token_embd.weight")
_OUTPUT = "output.weight"

# Substrings of names that are never converted (beyond norms): MoE routers, vision
# and audio parts, state-space convolutions, small RWKV and T5 tensors.
_NEVER_SUBSTRINGS = (
    "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight",
    "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_",
    ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd")
_NEVER_EXACT = ("position_embd.weight", "token_types.weight")
_GLM5_NEXT_NEVER = ("hc_", "indexer.", "ssm_f_a", "ssm_f_b", "ssm_g_a", "ssm_g_b",
                    "ssm_beta", "attn_kv_a_mqa", "attn_k_b", "attn_v_b")


def allows_quantization(name, n_dims, arch="", quantize_output_tensor=True) -> bool:
    """Whether llama-quantize converts this tensor at all (else it is copied)."""
    if n_dims < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return False
    if name == _OUTPUT and not quantize_output_tensor:
        return False
    if name in _NEVER_EXACT or any(s in name for s in _NEVER_SUBSTRINGS):
        return False
    if arch == "glm5_next" and any(s in name for s in _GLM5_NEXT_NEVER):
        return False
    return True


def _category(name) -> str:
    if name == _OUTPUT:
        return "output"
    if name in TOKEN_EMBEDDINGS:
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                     ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


_ATTN_V_LIKE = ("attn_v", "attn_qkv", "attn_kv_b")
# The file types whose tensors are mostly below three bits per weight.
_VERY_LOW_BIT = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def fallback_type(wanted, n_per_row) -> str:
    """The type llama-quantize writes for rows of ``n_per_row`` values when the rules
    chose ``wanted``: ``wanted`` if its block divides the row, else one step to a type
    of 32-value blocks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; Q2_K, Q3_K and the
    ternary types -> Q4_0; the IQ types -> IQ4_NL), and F16 when that block does not
    divide the row either (the 32-value types go to F16 directly).

    Examples
    --------
    >>> from numba_quant.export.gguf_rules import fallback_type
    >>> fallback_type("Q4_K", 4096), fallback_type("Q4_K", 384), fallback_type("Q6_K", 100)
    ('Q4_K', 'Q5_0', 'F16')
    """
    wanted = ggml_type_named(wanted)
    if n_per_row % BLOCK_SIZES[wanted] == 0:
        return wanted
    if wanted.startswith("IQ"):
        other = "IQ4_NL"
    elif wanted in ("Q2_K", "Q3_K", "TQ1_0", "TQ2_0"):
        other = "Q4_0"
    elif wanted in ("Q4_K", "Q5_K", "Q6_K"):
        other = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}[wanted]
    elif BLOCK_SIZES[wanted] <= 32:
        other = wanted
    else:
        raise ValueError(f"no fallback type is defined for {wanted}")
    return other if n_per_row % BLOCK_SIZES[other] == 0 else "F16"


def requires_imatrix(name, qtype, file_type) -> bool:
    """Whether llama-quantize refuses to write this tensor without an importance
    matrix: the IQ1/IQ2/IQ3_XXS types, and Q2_K inside a Q2_K_S file."""
    if name in TOKEN_EMBEDDINGS or name == _OUTPUT:
        return False
    if qtype in ("IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"):
        return True
    return qtype == "Q2_K" and file_type.name == "Q2_K_S"


def _more_bits(i, n) -> bool:
    # Layers kept at a higher type by the _M mixtures: the first and last eighth, and
    # every third in between.  Python's // and % agree with C's here: i >= n // 8.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class _Counters:
    def __init__(self, n_attention_wv, n_layer, has_tied_embeddings):
        self.n_attention_wv = n_attention_wv
        self.n_ffn = n_layer
        self.has_tied_embeddings = has_tied_embeddings
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0


def _layer_of(counter, n, name, facts):
    """(layer, layers) of an FFN tensor: the running count of such tensors, or for a
    model with experts the number in its ``blk.N.`` name."""
    if max(1, facts.n_expert) > 1:
        m = _LAYER.match(name)
        if not m:
            raise ValueError(f"{name}: cannot tell the layer of this expert tensor")
        layer = int(m.group(1))
        if not 0 <= layer < n:
            raise ValueError(f"{name}: layer {layer} is not in [0, {n})")
        return layer, n
    return counter, n


def _output_type(ft, default, ne0, facts, opts):
    if opts.output_tensor_type is not None:
        return opts.output_tensor_type
    if ft.name == "MXFP4_MOE" or facts.arch == "falcon" or ne0 % BLOCK_SIZES[default]:
        return "Q8_0"
    if ft.name in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
        return "Q5_K"
    return "Q6_K" if default != "Q8_0" else default


def _attn_v_type(ft, new, facts, opts, c):
    f, gqa = ft.name, facts.n_gqa >= 4
    if f == "Q2_K":
        new = "Q4_K" if gqa else "Q3_K"
    elif f == "Q2_K_S" and gqa:
        new = "Q4_K"
    elif f == "IQ3_XXS":
        new = "Q4_K" if gqa else ("IQ3_XXS" if opts.has_imatrix else "IQ3_S")
    elif f in ("IQ3_XS", "IQ3_S") and gqa:
        new = "Q4_K"
    elif f == "IQ3_M":
        new = "Q4_K"
    elif f == "Q3_K_M":
        new = "Q5_K" if c.i_attention_wv < 2 else "Q4_K"
    elif f == "Q3_K_L":
        new = "Q5_K"
    elif f in ("IQ4_NL", "IQ4_XS") and gqa:
        new = "Q5_K"
    elif f in ("Q4_K_M", "Q5_K_M") and _more_bits(c.i_attention_wv, c.n_attention_wv):
        new = "Q6_K"
    elif f == "Q4_K_S" and c.i_attention_wv < 4:
        new = "Q5_K"
    if facts.is_70b and new in ("Q3_K", "Q4_K"):
        new = "Q5_K"       # 70B's attn_v is shared by eight heads: small, worth the bits
    if facts.n_expert == 8:
        new = "Q8_0"
    c.i_attention_wv += 1
    return new


def _ffn_down_type(ft, new, name, facts, opts, c):
    f, falcon = ft.name, facts.arch == "falcon"
    i, n = _layer_of(c.i_ffn_down, c.n_ffn, name, facts)
    if f == "Q2_K":
        new = "Q3_K"
    elif f == "Q2_K_S":
        if i < n // 8:
            new = "Q4_K"
    elif f == "IQ3_XXS" and not opts.has_imatrix:
        new = "Q4_K" if i < n // 8 else "Q3_K"
    elif f == "Q3_K_M":
        new = ("Q5_K" if i < n // 16 else
               "Q4_K" if not falcon or _more_bits(i, n) else "Q3_K")
    elif f == "IQ3_M" and (i < n // 8 or (facts.n_expert == 8 and _more_bits(i, n))):
        new = "Q4_K"
    elif f == "Q3_K_L":
        new = "Q4_K" if falcon else "Q5_K"
    elif f == "Q4_K_M":
        if falcon:
            new = "Q6_K" if i < n // 16 else "Q5_K" if _more_bits(i, n) else "Q4_K"
        elif _more_bits(i, n):
            new = "Q6_K"
    elif i < n // 8 and f in ("IQ4_NL", "IQ4_XS") and not opts.has_imatrix:
        new = "Q5_K"
    elif f == "Q5_K_M" and _more_bits(i, n):
        new = "Q6_K"
    elif f == "Q4_K_S" and not falcon and i < n // 8:
        new = "Q5_K"
    elif f in ("Q4_0", "Q5_0") and opts.has_imatrix and i < n // 8:
        # Guards the first layers' ffn_down, only with an imatrix (so that files made
        # without one stay as they were).
        new = "Q4_1" if f == "Q4_0" else "Q5_1"
    c.i_ffn_down += 1
    return new


def _attn_output_type(ft, new, facts):
    f = ft.name
    if facts.arch == "falcon":
        return "Q4_K" if f == "Q3_K_L" else new
    if facts.n_expert == 8:
        if f in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S",
                 "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"):
            return "Q5_K"
        return new
    return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
            "IQ3_M": "Q4_K"}.get(f, new)


def _very_low_bit_type(ft, new, cat, facts, c):
    f = ft.name
    iq2_sm = f in ("IQ2_S", "IQ2_M")
    if cat in _ATTN_V_LIKE:
        c.i_attention_wv += 1
        if facts.n_gqa >= 4 or facts.n_expert >= 4:
            return "Q4_K"
        return "IQ3_S" if iq2_sm else "Q2_K"
    if facts.n_expert == 8 and cat == "attn_k":
        return "Q4_K"
    if cat == "ffn_down":
        if c.i_ffn_down < c.n_ffn // 8:
            new = "IQ3_S" if iq2_sm else "Q2_K"
        c.i_ffn_down += 1
        return new
    if cat == "attn_output":
        if facts.n_expert == 8:
            return "Q5_K"
        if f in ("IQ1_S", "IQ1_M"):
            return "IQ2_XXS"
        if iq2_sm:
            return "IQ3_S"
    return new


def _mixture_type(ft, new, name, ne, cat, facts, opts, c):
    """The file type's own choice for one tensor (llama-quantize's mixture rules)."""
    f = ft.name
    if facts.arch == "glm5_next" and any(s in name for s in
                                         ("attn_q_a", "attn_q_b", "nextn.eh_proj")):
        if new not in ("F32", "F16", "BF16"):
            return "Q8_0"
    tied = c.has_tied_embeddings
    if cat == "output" or (tied and cat == "token_embd"):
        return _output_type(ft, new, ne[0], facts, opts)
    if f == "MXFP4_MOE":
        return "MXFP4" if len(ne) > 2 and ne[2] > 1 else "Q8_0"
    if cat == "token_embd":
        if opts.token_embedding_type is not None:
            return opts.token_embedding_type
        if f in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if f in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if f in ("TQ1_0", "TQ2_0"):
            return "Q4_K"
        return new
    if f in _VERY_LOW_BIT:
        return _very_low_bit_type(ft, new, cat, facts, c)
    if cat in _ATTN_V_LIKE:
        return _attn_v_type(ft, new, facts, opts, c)
    if cat == "attn_k":
        if facts.n_expert == 8:
            return "Q8_0"
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(f, new)
    if cat == "attn_q":
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(f, new)
    if cat == "ffn_down":
        return _ffn_down_type(ft, new, name, facts, opts, c)
    if cat == "attn_output":
        return _attn_output_type(ft, new, facts)
    if cat in ("ffn_gate", "ffn_up"):
        counter = "i_ffn_gate" if cat == "ffn_gate" else "i_ffn_up"
        i, n = _layer_of(getattr(c, counter), c.n_ffn, name, facts)
        if f == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "IQ3_XXS"
        setattr(c, counter, getattr(c, counter) + 1)
    return new


def plan(tensors, file_type, facts=ModelFacts(), options=PlanOptions()):
    """The type of each tensor, as llama-quantize chooses it.

    Parameters
    ----------
    tensors : sequence of (name, ne, type)
        In llama-quantize's order (sorted with :func:`tensor_order`): the name, ggml's
        shape (``ne``: the row length first) and the stored type's name.
    file_type : FileType
    facts : ModelFacts
    options : PlanOptions

    Returns
    -------
    list of (type name, converted)
        ``converted`` is False for tensors copied as they are (their type kept).

    Examples
    --------
    >>> from numba_quant.export.gguf_rules import plan, file_type_named, ModelFacts
    >>> tensors = [("token_embd.weight", (4096, 32000), "F16"),
    ...            ("blk.0.attn_norm.weight", (4096,), "F32"),
    ...            ("blk.0.attn_v.weight", (4096, 1024), "F16")]
    >>> plan(tensors, file_type_named("Q4_K_M"), ModelFacts("llama", 32, 4))
    [('Q6_K', True), ('F32', False), ('Q6_K', True)]
    """
    ft = file_type
    default = ft.default_type
    cats = [_category(name) for name, _, _ in tensors]
    c = _Counters(sum(cat in _ATTN_V_LIKE for cat in cats), facts.n_layer,
                  has_tied_embeddings="output" not in cats)
    out = []
    for (name, ne, stored), cat in zip(tensors, cats):
        if not allows_quantization(name, len(ne), facts.arch,
                                   options.quantize_output_tensor):
            out.append((stored, False))
            continue
        out.append((_tensor_type(name, tuple(ne), cat, ft, default, facts, options, c),
                    True))
    return out


def _tensor_type(name, ne, cat, ft, default, facts, opts, c):
    if opts.token_embedding_type is not None and cat == "token_embd":
        # per_layer_token_embd follows a --tensor-type pattern that names it.
        if not (name == "per_layer_token_embd.weight"
                and any(rx.search(name) for rx, _ in opts.tensor_types)):
            return opts.token_embedding_type
    if opts.output_tensor_type is not None and cat == "output":
        return opts.output_tensor_type
    if default in _UNQUANTIZED:
        return default
    new, manual = default, False
    for rx, qtype in opts.tensor_types:
        if rx.search(name):
            new, manual = qtype, True
            break
    if not manual and not opts.pure:
        new = _mixture_type(ft, new, name, ne, cat, facts, opts, c)
    return fallback_type(new, ne[0])
