#!/usr/bin/env python3
"""Generate N synthetic, valid contracts for benchmarking `pv validate`.

Each contract has ~10 stages and 30 falsifiers with realistic text lengths (claims and if_fails
of a few hundred characters, like the real contracts), three metrics per falsifier, acceptance
criteria, a dependency on the previous contract and a cross-contract stage requirement, so every
rule has work to do.

usage: scripts/gen-contracts.py OUT_DIR [N=1000] [STAGES=10] [FALSIFIERS=30]
"""
import os
import sys

WORDS = ("the kernel reads every block of the tensor in its stored qtype and accumulates in f32 "
         "so that the result matches the float64 reference within the stated tolerance for all "
         "shapes and seeds listed here").split()


def text(seed, n):
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n))


def area(i):
    # Upper-case letters only: A, B, ..., Z, AA, AB, ...
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return "G" + s


def contract(i, stages, falsifiers):
    a = area(i)
    cid = f"gen-{i:04d}-v1"
    out = [
        "# yaml-language-server: $schema=./contract.schema.json",
        f"contract: {cid}",
        "version: 1.2.0",
        f"title: Generated contract {i}",
        "summary: >",
        f"  {text(i, 40)}",
        "owners: [bench]",
    ]
    if i > 0:
        out += ["depends_on:", f"  - contract: gen-{i - 1:04d}-v1", '    version: ">=1.0.0"']
    out.append("acceptance_criteria:")
    for k in range(3):
        fs = ", ".join(f"FALSIFY-{a}-CHECK-{j + 1:03d}" for j in range(k, falsifiers, 3))
        out += [f"  - id: AC-{a}-{k + 1:03d}", f"    text: {text(i + k, 20)}", f"    falsifiers: [{fs}]"]
    out.append("stages:")
    per = max(1, falsifiers // stages)
    for s in range(stages):
        req = [f"M-{a}-1.{s}"] if s > 0 else ([f"M-{area(i - 1)}-1.{stages - 1}"] if i > 0 else [])
        fs = ", ".join(f"FALSIFY-{a}-CHECK-{j + 1:03d}" for j in range(s * per, min(falsifiers, (s + 1) * per)))
        out += [f"  - id: M-{a}-1.{s + 1}", f"    title: {text(s, 8)}",
                f"    requires: [{', '.join(req)}]", f"    falsifiers: [{fs}]"]
    out.append("falsifiers:")
    for j in range(falsifiers):
        out += [
            f"  - id: FALSIFY-{a}-CHECK-{j + 1:03d}",
            "    claim: >",
            f"      {text(i + j, 30)}",
            f"      {text(i + j + 1, 30)}",
            f"    tier: {'hardware' if j % 5 == 0 else 'algorithm'}",
        ]
        if j % 5 == 0:
            out += ["    gate:", "      features: [cuda]", "      devices: [cuda]"]
        out += ["    metrics:"]
        for m, (op, thr) in enumerate([("<=", "0"), (">=", "0.9999"), ("<", "1.0e-3")]):
            out += [f"      - name: metric_{m}_value", f'        op: "{op}"', f"        threshold: {thr}"]
        out += ["    if_fails: >", f"      {text(j, 35)}"]
    out += ["amendment_history:"]
    for v, d in (("1.0.0", "2026-11-01"), ("1.1.0", "2026-11-10"), ("1.2.0", "2026-11-22")):
        out += [f"  - version: {v}", f"    date: {d}", f"    summary: {text(i, 6)}", "    changes:", f"      - {text(i, 10)}"]
    return cid, "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    stages = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    falsifiers = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for i in range(n):
        cid, body = contract(i, stages, falsifiers)
        with open(os.path.join(out_dir, cid + ".yaml"), "w") as f:
            f.write(body)
        total += len(body)
    print(f"wrote {n} contracts, {total / 1e6:.1f} MB, to {out_dir}")


if __name__ == "__main__":
    main()
