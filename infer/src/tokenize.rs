//! `infer tokenize`: text in, token ids out, with the file's own tokenizer, as llama.cpp's
//! `llama-tokenize` does, so the tokenizer can be checked from outside on any GGUF file
//! (vocabulary-only files included: no tensor is read).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use engine::model::{tokenizer_from_gguf, GgufFile};

/// Tokenize text with a GGUF file's tokenizer (its `tokenizer.ggml.*` metadata); the file may
/// hold only a vocabulary.
///
/// Prints one `id -> 'piece'` line per token (the piece's bytes, invalid UTF-8 shown as
/// U+FFFD), or with --ids the list `[id, id, ...]`, or with --json
/// `{"ids": [...], "pieces": [...]}`.
///
/// Example: infer tokenize small.gguf --text "hello world" --ids
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// GGUF file (a model, or a vocabulary-only file)
    pub model: PathBuf,
    /// The text to tokenize
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub text: Option<String>,
    /// Read the text from this file (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Parse special tokens written in the text (e.g. <|im_start|>), as `infer run --special`
    #[arg(long)]
    pub special: bool,
    /// Print only the ids, as a list
    #[arg(long, conflicts_with = "json")]
    pub ids: bool,
    /// Print JSON: ids and pieces
    #[arg(long)]
    pub json: bool,
}

fn read_text(args: &TokenizeArgs) -> Result<String> {
    match (&args.text, &args.file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the text from stdin (it must be UTF-8)")?;
            Ok(s)
        }
        (None, Some(p)) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", p.display()))
        }
        (None, None) => bail!("give the text with --text or --file"),
    }
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    if !args.model.exists() {
        bail!("model file {} does not exist", args.model.display());
    }
    let text = read_text(&args)?;
    let file =
        GgufFile::open(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let tok = tokenizer_from_gguf(&file).with_context(|| {
        format!(
            "building the tokenizer from the metadata of {}",
            args.model.display()
        )
    })?;
    let ids = tok.encode(&text, args.special)?;
    let mut pieces = Vec::with_capacity(ids.len());
    for &id in &ids {
        let bytes = tok.token_bytes(id)?;
        pieces.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    if args.json {
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else if args.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("[{}]", list.join(", "));
    } else {
        for (id, piece) in ids.iter().zip(&pieces) {
            println!("{id:>6} -> '{}'", piece.escape_debug());
        }
    }
    Ok(())
}
