#!/usr/bin/env python3
"""gguf-py as the oracle for engine::gguf and engine::quant (fixture python-oracle).

Subcommands:
  dequant FILE OUTDIR     dequantize every tensor of FILE with gguf.quants.dequantize and write
                          OUTDIR/<index>.f32 (raw little-endian f32, tensor order of the file)
  quantize-q8_0 IN OUT    read raw f32 from IN, write gguf.quants.quantize(x, Q8_0) bytes to OUT
  read FILE               print JSON: metadata (key, type id, element type id, values as raw
                          little-endian hex per scalar / UTF-8 string) and tensors (name, ggml
                          type, shape fastest-first, data as hex) as GGUFReader sees them
  write FILE              write a file with GGUFWriter (fixed content below) and print the same
                          JSON as `read` describes for what it wrote

Values are compared by bytes, never by parsed floats, so the comparison is bit-exact.
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGUFValueType, GGMLQuantizationType


def hexs(a) -> str:
    return np.ascontiguousarray(a).tobytes().hex()


def field_json(f):
    main = f.types[0]
    out = {"key": f.name, "type": int(main), "sub_type": None, "values": []}
    if main == GGUFValueType.ARRAY:
        sub = f.types[-1]
        if len(f.types) > 2:
            raise SystemExit(f"{f.name}: nested arrays are not compared through gguf-py")
        out["sub_type"] = int(sub)
        for i in f.data:
            part = f.parts[i]
            if sub == GGUFValueType.STRING:
                out["values"].append(part.tobytes().decode("utf-8"))
            else:
                out["values"].append(hexs(part))
    elif main == GGUFValueType.STRING:
        out["values"].append(f.parts[f.data[0]].tobytes().decode("utf-8"))
    else:
        out["values"].append(hexs(f.parts[f.data[0]]))
    return out


def read_json(path):
    r = GGUFReader(path)
    meta = [field_json(f) for f in r.fields.values() if not f.name.startswith("GGUF.")]
    tensors = [
        {
            "name": t.name,
            "type": int(t.tensor_type),
            "shape": [int(d) for d in t.shape],
            "data": hexs(t.data),
        }
        for t in r.tensors
    ]
    return {"metadata": meta, "tensors": tensors}


def cmd_dequant(path, outdir):
    r = GGUFReader(path)
    for i, t in enumerate(r.tensors):
        y = gguf.quants.dequantize(t.data, t.tensor_type)
        np.ascontiguousarray(y, dtype=np.float32).tofile(f"{outdir}/{i}.f32")


def cmd_quantize_q8_0(inp, out):
    x = np.fromfile(inp, dtype="<f4")
    q = gguf.quants.quantize(x.reshape(1, -1), GGMLQuantizationType.Q8_0)
    np.ascontiguousarray(q).tofile(out)


def cmd_write(path):
    w = gguf.GGUFWriter(path, arch="oracle")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", -1.5e-3)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo GGUF")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 3.141592653589793)
    w.add_array("t.arr_str", ["a", "", "ünï"])
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -0.25])
    w.add_array("t.arr_empty_str", [])
    rng = np.random.default_rng(7)
    w.add_tensor("w.f32", rng.standard_normal((3, 64)).astype(np.float32))
    w.add_tensor("w.f16", rng.standard_normal((2, 32)).astype(np.float16))
    q8 = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), GGMLQuantizationType.Q8_0)
    w.add_tensor("w.q8_0", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(json.dumps(read_json(path)))


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "dequant":
        cmd_dequant(argv[2], argv[3])
    elif cmd == "quantize-q8_0":
        cmd_quantize_q8_0(argv[2], argv[3])
    elif cmd == "read":
        print(json.dumps(read_json(argv[2])))
    elif cmd == "write":
        cmd_write(argv[2])
    else:
        raise SystemExit(f"unknown command {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
