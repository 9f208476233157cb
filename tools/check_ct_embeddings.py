"""Load compressed-tensors exports with transformers and compare sentence embeddings.

For each scheme: the directory numba_quant wrote (NQ/SCHEME) and the one llmcompressor
wrote (REF/SCHEME) are loaded with ``AutoModel.from_pretrained(dir, dtype="auto")`` on
the CPU; two sentences go through each, and through the float model FLOAT; the sentence
embedding is the mean of ``last_hidden_state`` over the tokens (attention mask).  Printed
per scheme: whether the two weight files are identical, the largest absolute difference
between numba_quant's and llmcompressor's embeddings, and each one's cosine similarity
to the float model's (per sentence).  Needs torch, transformers and compressed-tensors.

    python tools/check_ct_embeddings.py FLOAT NQ REF [--schemes W4A16 ...]
"""
import argparse
import filecmp
import sys
from pathlib import Path

SENTENCES = ["The quick brown fox jumps over the lazy dog.",
             "Quantized weights should give nearly the same sentence embeddings."]


def embeddings(model_dir, tokenizer):
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained(model_dir, dtype="auto").eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.float()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def main(argv=None):
    import torch
    from transformers import AutoTokenizer
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("float_dir")
    p.add_argument("nq_dir")
    p.add_argument("ref_dir")
    p.add_argument("--schemes", nargs="+", default=["W8A16", "W4A16", "W4A16_ASYM",
                                                     "FP8_DYNAMIC", "FP8_BLOCK",
                                                     "NVFP4A16", "MXFP4A16"])
    args = p.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.float_dir)
    base = embeddings(args.float_dir, tokenizer)
    cos = torch.nn.functional.cosine_similarity
    for scheme in args.schemes:
        nq, ref = Path(args.nq_dir) / scheme, Path(args.ref_dir) / scheme
        same = filecmp.cmp(nq / "model.safetensors", ref / "model.safetensors",
                           shallow=False)
        results = []
        for d in (nq, ref):
            try:
                results.append(embeddings(d, tokenizer))
            except Exception as exc:   # report what transformers says, for both
                results.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
        if all(isinstance(r, torch.Tensor) for r in results):
            diff = (results[0] - results[1]).abs().max().item()
            print(f"{scheme:12} weights identical: {same}; max |nq - ref| = {diff:.3g}; "
                  f"cosine to float: nq {cos(results[0], base).tolist()} "
                  f"ref {cos(results[1], base).tolist()}")
        else:
            print(f"{scheme:12} weights identical: {same}; nq: "
                  f"{results[0] if isinstance(results[0], str) else 'ran'}; ref: "
                  f"{results[1] if isinstance(results[1], str) else 'ran'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
