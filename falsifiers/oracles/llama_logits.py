#!/usr/bin/env python3
"""llama.cpp's logits for every position of a token list: the external oracle for
contracts/qwen3-moe-forward-v1.yaml (FALSIFY-QW3-LLAMA-*).

    llama_logits.py MODEL.gguf --tokens 1,2,3 --out logits.npy [--threads 2]
    llama_logits.py MODEL.gguf --tokenize "some text" --out ids.json

Writes float32 [n_tokens, vocab] (rows = positions), the same layout as `infer logits`.
Uses llama-cpp-python (CPU build): logits_all=True, n_threads=2 by default, no BOS added, and an
f32 KV cache (type_k = type_v = F32), as our forward keeps it. llama.cpp's default f16 cache
rounds K and V to 11 bits, which flipped a top-1 router choice of the `odd` f32 model (seed 2,
position 3, reference margin 3e-4) and with it every later position (cosine 0.774); with the f32
cache the same model agrees at every position (cosine 1.0). `--kv f16` gives llama.cpp's default.
"""
import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--tokenize", action="append", help="text to tokenize (repeatable); writes JSON lists of ids")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv", choices=["f32", "f16"], default="f32", help="KV cache type (default f32)")
    a = ap.parse_args()

    from llama_cpp import Llama

    n_ctx = 512
    if a.tokens:
        n_ctx = max(n_ctx, len(a.tokens.split(",")) + 8)
    # ggml type ids: 0 = F32, 1 = F16
    kv = 0 if a.kv == "f32" else 1
    llm = Llama(model_path=a.model, n_ctx=n_ctx, n_batch=512, n_threads=a.threads,
                logits_all=True, verbose=False, seed=0, type_k=kv, type_v=kv)
    if a.tokenize:
        ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in a.tokenize]
        with open(a.out, "w") as f:
            json.dump(ids, f)
        return 0
    if not a.tokens:
        print("give --tokens or --tokenize", file=sys.stderr)
        return 2
    toks = [int(t) for t in a.tokens.split(",")]
    llm.reset()
    llm.eval(toks)
    n_vocab = llm.n_vocab()
    logits = np.array(llm.scores[: len(toks), :n_vocab], dtype=np.float32)
    np.save(a.out, logits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
