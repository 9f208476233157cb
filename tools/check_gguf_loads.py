"""Load a GGUF file with llama.cpp (llama-cpp-python) and run it on a few tokens.

Shows that a file written by an exporter, or by llama-quantize, is one llama.cpp accepts
and can evaluate: a causal model's logits for the last token, or an embedding model's
pooled embedding, are computed and checked to be finite.  Exits 0 when the file loads
and the values are finite, 1 otherwise.  Runs with the llama-cpp-python environment
(not numba_quant's):

    /work/venv-llama/bin/python tools/check_gguf_loads.py MODEL.gguf [--prompt TEXT]
    /work/venv-llama/bin/python tools/check_gguf_loads.py MODEL.gguf --embedding

``--embedding`` is for embedding models such as BERT (pooled ``embed(prompt)``); without
it the prompt is tokenized, evaluated and the logits of its last token are printed.
"""
import argparse
import math
import sys

import llama_cpp

N_SHOWN = 8


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the GGUF file")
    parser.add_argument("--embedding", action="store_true",
                        help="an embedding model: print embed(prompt) instead of logits")
    parser.add_argument("--prompt", default="hello world")
    parser.add_argument("--n-ctx", type=int, default=64)
    return parser.parse_args(argv)


def last_token_logits(llm, prompt):
    """Logits of the prompt's last token (the prompt is tokenized with a BOS token)."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
    llm.eval(tokens)
    return tokens, [float(v) for v in llm.scores[llm.n_tokens - 1]]


def pooled_embedding(llm, prompt):
    """The model's pooled embedding of the prompt."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
    return tokens, [float(v) for v in llm.embed(prompt)]


def main(argv=None):
    args = _parse_args(argv)
    # logits_all: llama-cpp-python keeps no logits after eval() otherwise.
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.n_ctx, embedding=args.embedding,
                          logits_all=not args.embedding, n_threads=2, verbose=False)
    run = pooled_embedding if args.embedding else last_token_logits
    tokens, values = run(llm, args.prompt)
    kind = "embedding" if args.embedding else "logits"
    print(f"{args.model}: n_vocab {llm.n_vocab()}, n_embd {llm.n_embd()}, "
          f"{len(tokens)} tokens {tokens}")
    print(f"{kind} ({len(values)} values), first {N_SHOWN}: "
          + " ".join(f"{v:.6g}" for v in values[:N_SHOWN]))
    finite = bool(values) and all(math.isfinite(v) for v in values)
    print("ok" if finite else "FAILED: empty or non-finite values")
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
