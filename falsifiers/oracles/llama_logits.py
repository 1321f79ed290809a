#!/usr/bin/env python3
"""llama.cpp's logits for every position of a token list: the external oracle for
contracts/qwen3-moe-forward-v1.yaml (FALSIFY-QW3-LLAMA-*).

    llama_logits.py MODEL.gguf --tokens 1,2,3 --out logits.npy [--threads 2]
    llama_logits.py MODEL.gguf --tokenize "some text" --out ids.json

Writes float32 [n_tokens, vocab] (rows = positions), the same layout as `infer logits`.
Uses llama-cpp-python (CPU build): logits_all=True, n_threads=2 by default, no BOS added.
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
    a = ap.parse_args()

    from llama_cpp import Llama

    n_ctx = 512
    if a.tokens:
        n_ctx = max(n_ctx, len(a.tokens.split(",")) + 8)
    llm = Llama(model_path=a.model, n_ctx=n_ctx, n_batch=512, n_threads=a.threads,
                logits_all=True, verbose=False, seed=0)
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
