//! `infer tokenize` through the binary: the ids it prints are the library tokenizer's (whose
//! agreement with llama.cpp is FALSIFY-QW3-TOKENIZER-002), in each output form, with clear
//! errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer"))
        .args(args)
        .output()
        .expect("run infer")
}

fn tiny(dir: &Path) -> String {
    let p = dir.join("tiny.gguf");
    let o = infer(&["synth", "--preset", "tiny", "-o", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    p.to_str().unwrap().to_string()
}

#[test]
fn ids_match_the_library_tokenizer_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let file = engine::model::GgufFile::open(Path::new(&model)).unwrap();
    let tok = engine::model::tokenizer_from_gguf(&file).unwrap();
    for (text, special) in [
        ("hello world", false),
        ("the model and the expert", false),
        ("<|im_start|>user", true),
        ("<|im_start|>user", false),
    ] {
        let want = tok.encode(text, special).unwrap();
        let run = |form: Option<&str>| {
            let mut args = vec!["tokenize", model.as_str(), "--text", text];
            args.extend(special.then_some("--special"));
            args.extend(form);
            let o = infer(&args);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let v: serde_json::Value = serde_json::from_str(&run(Some("--json"))).unwrap();
        let got: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
        assert_eq!(got, want, "{text:?} special={special}");
        assert_eq!(v["pieces"].as_array().unwrap().len(), want.len());
        let list: Vec<String> = want.iter().map(u32::to_string).collect();
        assert_eq!(run(Some("--ids")).trim(), format!("[{}]", list.join(", ")));
        assert_eq!(run(None).lines().count(), want.len());
    }
    // --file reads the text from a file.
    let t = dir.path().join("t.txt");
    std::fs::write(&t, "hello world").unwrap();
    let o = infer(&["tokenize", &model, "--file", t.to_str().unwrap(), "--ids"]);
    let want: Vec<String> = tok
        .encode("hello world", false)
        .unwrap()
        .iter()
        .map(u32::to_string)
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("[{}]", want.join(", "))
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = infer(&["tokenize", "/nonexistent.gguf", "--text", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let o = infer(&["tokenize", junk.to_str().unwrap(), "--text", "x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("junk.gguf") && !err.contains("panicked"),
        "{err}"
    );
    let model = tiny(dir.path());
    let bin = dir.path().join("bin.txt");
    std::fs::write(&bin, [0xff, 0xfe]).unwrap();
    let o = infer(&["tokenize", &model, "--file", bin.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not UTF-8"));
    let o = infer(&["tokenize", &model]);
    assert!(!o.status.success());
}

#[test]
fn a_vocabulary_only_file_tokenizes_like_the_model_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    // The model's tokenizer metadata, and nothing else: no tensor at all.
    let full = engine::gguf::GgufFile::open(Path::new(&model)).unwrap();
    let vocab = dir.path().join("vocab.gguf");
    let mut w = engine::gguf::GgufWriter::create(&vocab).unwrap();
    for (k, v) in full.metadata() {
        if k.starts_with("tokenizer.") || k == "general.architecture" {
            w.add_metadata(k, v.clone()).unwrap();
        }
    }
    w.begin_data().unwrap().finish().unwrap();
    let vocab = vocab.to_str().unwrap();
    for text in ["hello world", "years of people have made"] {
        let a = infer(&["tokenize", &model, "--text", text, "--ids"]);
        let b = infer(&["tokenize", vocab, "--text", text, "--ids"]);
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        assert_eq!(a.stdout, b.stdout, "{text:?}");
    }
}
