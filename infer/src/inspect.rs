//! `infer inspect MODEL [--json]`: a GGUF file's header: version, alignment, metadata and a
//! tensor table (name, type, shape in GGUF order, bytes, data offset). Read through
//! `engine::gguf`, so a damaged file gets the reader's precise error and exit code 1.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use engine::gguf::{GgufFile, Value};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The GGUF file.
    pub model: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Array items shown per metadata value in the table (JSON always has all of them).
    #[arg(long, default_value_t = 8)]
    pub max_items: usize,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let f =
        GgufFile::open(&a.model).with_context(|| format!("inspecting {}", a.model.display()))?;
    let text = if a.json {
        serde_json::to_string_pretty(&to_json(&f))? + "\n"
    } else {
        table(&f, &a)?
    };
    // A closed pipe (`infer inspect m.gguf | head`) is the reader's choice, not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn table(f: &GgufFile, a: &InspectArgs) -> Result<String> {
    let mut o = String::new();
    let total: usize = f.tensors().iter().map(|t| t.n_bytes).sum();
    let params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    writeln!(
        o,
        "{}: GGUF v{}, {} bytes, alignment {}, header {} bytes, data at {}",
        a.model.display(),
        f.version,
        f.file_len(),
        f.alignment(),
        f.header_len(),
        f.data_start()
    )?;
    writeln!(
        o,
        "{} metadata entries, {} tensors, {} values, {} bytes of tensor data",
        f.metadata().len(),
        f.tensors().len(),
        params,
        total
    )?;
    writeln!(o)?;
    let kw = f
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(3)
        .max(3);
    for (k, v) in f.metadata() {
        let ty = match v {
            Value::Array(t, items) => format!("{t}[{}]", items.len()),
            other => other.value_type().to_string(),
        };
        writeln!(
            o,
            "{k:kw$}  {ty:12}  {}",
            clip(&v.display_short(a.max_items), 120)
        )?;
    }
    writeln!(o)?;
    let nw = f
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        o,
        "{:nw$}  {:5}  {:24}  {:>12}  {:>12}",
        "name", "type", "shape", "bytes", "offset"
    )?;
    for t in f.tensors() {
        let shape = format!("{:?}", t.dims);
        writeln!(
            o,
            "{:nw$}  {:5}  {:24}  {:>12}  {:>12}",
            t.name,
            t.qtype.name(),
            shape,
            t.n_bytes,
            t.start
        )?;
    }
    Ok(o)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push_str("...");
        c
    }
}

fn to_json(f: &GgufFile) -> serde_json::Value {
    let meta: serde_json::Map<String, serde_json::Value> = f
        .metadata()
        .iter()
        .map(|(k, v)| {
            let ty = match v {
                Value::Array(t, _) => format!("array[{t}]"),
                other => other.value_type().to_string(),
            };
            (
                k.clone(),
                serde_json::json!({"type": ty, "value": v.to_json()}),
            )
        })
        .collect();
    let tensors: Vec<serde_json::Value> = f
        .tensors()
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "type": t.qtype.name(),
                "shape": t.dims,
                "bytes": t.n_bytes,
                "offset": t.start,
            })
        })
        .collect();
    serde_json::json!({
        "version": f.version,
        "file_bytes": f.file_len(),
        "alignment": f.alignment(),
        "data_start": f.data_start(),
        "metadata": meta,
        "tensors": tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::gguf::GgufWriter;
    use engine::quant::QType;

    fn file(dir: &std::path::Path) -> PathBuf {
        let p = dir.join("m.gguf");
        let mut w = GgufWriter::create(&p).unwrap();
        w.add_metadata("general.architecture", Value::String("qwen3moe".into()))
            .unwrap();
        w.add_metadata("x.nan", Value::F32(f32::NAN)).unwrap();
        w.add_tensor("blk.0.attn_q.weight", QType::Q4K, &[256, 4])
            .unwrap();
        let mut d = w.begin_data().unwrap();
        d.write_tensor_data(&[0u8; 4 * 144]).unwrap();
        d.finish().unwrap();
        p
    }

    #[test]
    fn table_and_json_list_metadata_and_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path());
        let f = GgufFile::open(&p).unwrap();
        let args = InspectArgs {
            model: p,
            json: false,
            max_items: 8,
        };
        let t = table(&f, &args).unwrap();
        assert!(t.contains("general.architecture"), "{t}");
        assert!(t.contains("blk.0.attn_q.weight  Q4_K   [256, 4]"), "{t}");
        let j = to_json(&f);
        assert_eq!(j["tensors"][0]["bytes"], 576);
        assert_eq!(j["tensors"][0]["shape"], serde_json::json!([256, 4]));
        // NaN cannot be a JSON number: it is written as a string.
        assert_eq!(j["metadata"]["x.nan"]["value"], "NaN");
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path());
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = run(InspectArgs {
            model: p.clone(),
            json: true,
            max_items: 8,
        })
        .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("m.gguf") && msg.contains("past the end"),
            "{msg}"
        );
    }
}
