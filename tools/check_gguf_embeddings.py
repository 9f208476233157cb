"""Sentence embeddings of quantized GGUF files against the float model, in llama.cpp.

Loads each file with llama-cpp-python (``embedding=True``), embeds a fixed set of
sentences, and prints per file the cosine similarity of each sentence's embedding with
the reference file's (mean and lowest), and whether the files rank the sentence pairs
alike (the most similar partner of each sentence).  Exits 1 when a file does not load
or gives a non-finite value.  Runs in the llama-cpp-python environment:

    /work/venv-llama/bin/python tools/check_gguf_embeddings.py minilm-f32.gguf OUT-Q4_K_M.gguf ...

The first file is the reference (the float model converted by convert_hf_to_gguf.py).
"""
import argparse
import math
import sys

import llama_cpp

SENTENCES = (
    "The cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Stock markets fell sharply on Monday.",
    "Shares dropped at the start of the week.",
    "How do I bake sourdough bread?",
    "A recipe for a crusty loaf made with a starter.",
    "The rocket reached orbit after a short delay.",
    "Quantization stores weights with fewer bits.",
)


def embed_all(path):
    llm = llama_cpp.Llama(model_path=path, embedding=True, n_ctx=128, verbose=False)
    out = [list(map(float, llm.embed(s))) for s in SENTENCES]
    llm.close()
    return out


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def nearest(embeddings):
    """For each sentence, the index of its most similar other sentence."""
    return [max((j for j in range(len(embeddings)) if j != i),
                key=lambda j: cosine(embeddings[i], embeddings[j]))
            for i in range(len(embeddings))]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference")
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    ref = embed_all(args.reference)
    ref_nearest = nearest(ref)
    print(f"reference {args.reference}: nearest partners {ref_nearest}")
    print("| file | mean cosine | lowest cosine | same nearest partners |")
    print("| --- | ---: | ---: | --- |")
    status = 0
    for path in args.files:
        try:
            emb = embed_all(path)
        except Exception as exc:  # llama-cpp-python raises ValueError on a bad file
            print(f"| {path} | failed to load: {exc} | | |")
            status = 1
            continue
        if not all(math.isfinite(v) for e in emb for v in e):
            print(f"| {path} | non-finite values | | |")
            status = 1
            continue
        cos = [cosine(a, b) for a, b in zip(ref, emb)]
        same = nearest(emb) == ref_nearest
        print(f"| {path} | {sum(cos) / len(cos):.5f} | {min(cos):.5f} | "
              f"{'yes' if same else 'no'} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
