#!/usr/bin/env python3
"""Writes a tiny qwen3moe model with gguf-py's GGUFWriter (not our writer), for the cross-writer
falsifier FALSIFY-QW3-LLAMA-GGUFPY-001: if our reader only understood our own writer, this file
would show it.

    llama_gguf_py_model.py OUT.gguf --seed 1 --quant f32|q8_0

Shape: 2 layers, hidden 128, 4 q / 2 kv heads, head dim 32, 8 experts (top 2), expert FFN 64,
vocab 320 (256 byte tokens, a few merges, specials). Norms and router are F32.
"""
import argparse
import sys

import numpy as np
import gguf


def byte_table():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quant", choices=["f32", "q8_0"], default="f32")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    L, H, NH, NKV, HD, NE, K, FF, V = 2, 128, 4, 2, 32, 8, 2, 64, 320
    arch = "qwen3moe"
    w = gguf.GGUFWriter(a.out, arch)
    w.add_context_length(512)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e6)
    w.add_expert_count(NE)
    w.add_expert_used_count(K)
    w.add_expert_feed_forward_length(FF)
    w.add_file_type(0 if a.quant == "f32" else 7)

    toks = byte_table()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s"]
    for m in merges:
        toks.append(m.replace(" ", ""))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    ttypes = [1] * len(toks)
    for s in specials:
        toks.append(s)
        ttypes.append(3)
    i = 0
    while len(toks) < V:
        toks.append(f"<|reserved_{i}|>")
        ttypes.append(3)
        i += 1
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(toks)
    w.add_token_types(ttypes)
    w.add_token_merges(merges)
    w.add_eos_token_id(toks.index("<|im_end|>"))
    w.add_add_bos_token(False)

    def mat(rows, cols, scale=None):
        s = 1.0 / np.sqrt(cols) if scale is None else scale
        return (rng.uniform(-1, 1, size=(rows, cols)) * s * np.sqrt(3)).astype(np.float32)

    def add(name, arr, quantize=True):
        # numpy shape is slowest-first; GGUF dims are fastest-first (gguf-py reverses them).
        if quantize and a.quant == "q8_0" and arr.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, arr)

    norm = lambda n: rng.uniform(0.8, 1.2, size=(n,)).astype(np.float32)
    add("token_embd.weight", mat(V, H, 1.0))
    for l in range(L):
        p = f"blk.{l}."
        add(p + "attn_norm.weight", norm(H), False)
        add(p + "attn_q.weight", mat(NH * HD, H))
        add(p + "attn_k.weight", mat(NKV * HD, H))
        add(p + "attn_v.weight", mat(NKV * HD, H))
        add(p + "attn_output.weight", mat(H, NH * HD))
        add(p + "attn_q_norm.weight", norm(HD), False)
        add(p + "attn_k_norm.weight", norm(HD), False)
        add(p + "ffn_norm.weight", norm(H), False)
        add(p + "ffn_gate_inp.weight", mat(NE, H, 2.0 / np.sqrt(H)), False)
        add(p + "ffn_gate_exps.weight", np.stack([mat(FF, H) for _ in range(NE)]))
        add(p + "ffn_up_exps.weight", np.stack([mat(FF, H) for _ in range(NE)]))
        add(p + "ffn_down_exps.weight", np.stack([mat(H, FF) for _ in range(NE)]))
    add("output_norm.weight", norm(H), False)
    add("output.weight", mat(V, H))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
