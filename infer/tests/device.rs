//! `--device cuda` on every command: without the `cuda` feature each is the same clear error,
//! never a silent CPU answer. (On a GPU machine, scripts/device-run.sh runs them for real.)

#[cfg(not(feature = "cuda"))]
#[test]
fn every_command_refuses_cuda_when_not_built_with_it() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let model = model.to_str().unwrap();
    let infer = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_infer"))
            .args(args)
            .output()
            .expect("run infer")
    };
    assert!(infer(&["synth", "--preset", "tiny", "-o", model])
        .status
        .success());
    let out = dir.path().join("l.npy");
    let out = out.to_str().unwrap();
    let trace_dir = dir.path().join("trace");
    let trace_dir = trace_dir.to_str().unwrap();
    for args in [
        vec!["run", model, "--prompt", "hello", "--device", "cuda"],
        vec![
            "logits", model, "--tokens", "1,2", "--out", out, "--device", "cuda",
        ],
        vec!["bench", model, "--device", "cuda"],
        vec![
            "trace",
            model,
            "--tokens",
            "1,2",
            "--save-tensor",
            "logits",
            "--out",
            trace_dir,
            "--device",
            "cuda",
        ],
    ] {
        let o = infer(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            err.contains("built without the `cuda` feature") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?} printed a CPU answer");
    }
}
