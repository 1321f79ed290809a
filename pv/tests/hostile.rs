//! Hostile input: every case ends in a clear diagnostic and an exit code, never a panic or hang.

use std::path::Path;

use pv::validate::{validate, Since};

fn run_on(files: &[(&str, Vec<u8>)]) -> (Vec<&'static str>, u8, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    let report = validate(&[dir.path().to_path_buf()], &Since::Off);
    let text = pv::render::to_string(&report.diagnostics);
    (
        report.diagnostics.iter().map(|d| d.code).collect(),
        report.exit_code(),
        text,
    )
}

#[test]
fn fifty_megabyte_file_is_refused_unread() {
    let big = vec![b'a'; 50 * 1024 * 1024];
    let (codes, exit, text) = run_on(&[("big-v1.yaml", big)]);
    assert_eq!(codes, ["PV003"], "{text}");
    assert_eq!(exit, 1);
    assert!(
        text.contains("contracts larger than 8388608 bytes are refused"),
        "{text}"
    );
}

#[test]
fn alias_bomb_is_bounded() {
    // Nine levels of ten-fold aliases: 10^9 nodes if expanded naively.
    let mut s = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let t = std::time::Instant::now();
    let (codes, exit, _) = run_on(&[("bomb-v1.yaml", s.into_bytes())]);
    assert_eq!(codes, ["PV003"]);
    assert_eq!(exit, 1);
    // Not a timing test: a bound far above the real figure (milliseconds) that only an
    // unbounded expansion would exceed.
    assert!(t.elapsed().as_secs() < 30);
}

#[test]
fn deep_flow_and_block_nesting() {
    let flow = "[".repeat(200_000);
    let (codes, _, text) = run_on(&[("deep-v1.yaml", flow.into_bytes())]);
    assert!(codes == ["PV003"] || codes == ["PV001"], "{codes:?} {text}");
    let mut block = String::new();
    for i in 0..500 {
        block.push_str(&" ".repeat(i));
        block.push_str("a:\n");
    }
    let (codes, _, _) = run_on(&[("block-v1.yaml", block.into_bytes())]);
    assert_eq!(codes, ["PV003"]);
}

#[test]
fn malformed_text() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("tab", b"contract: x\n\tversion: 1\n".to_vec(), "PV001"),
        ("dup", b"contract: a\ncontract: b\n".to_vec(), "PV004"),
        ("empty", Vec::new(), "PV005"),
        ("bom-only", b"\xef\xbb\xbf".to_vec(), "PV005"),
        ("latin1", b"title: caf\xe9\n".to_vec(), "PV001"),
        ("binary", (0u8..=255).cycle().take(4096).collect(), "PV001"),
        ("unclosed", b"contract: [a, b\n".to_vec(), "PV001"),
        ("scalar", b"just a string\n".to_vec(), "PV002"),
        ("list", b"- a\n- b\n".to_vec(), "PV002"),
        ("two-docs", b"a: 1\n---\nb: 2\n".to_vec(), "PV001"),
        ("complex-key", b"? [a, b]\n: c\n".to_vec(), "PV001"),
        ("undefined-alias", b"a: *nope\n".to_vec(), "PV001"),
        (
            "huge-int",
            b"contract: 99999999999999999999999999\n".to_vec(),
            "PV002",
        ),
    ];
    for (name, bytes, code) in cases {
        let (codes, exit, text) = run_on(&[(&format!("{name}.yaml"), bytes)]);
        assert_eq!(codes.first().copied(), Some(code), "{name}: {text}");
        assert_eq!(exit, 1, "{name}");
    }
}

#[test]
fn unreadable_file_and_empty_folder_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A dangling symlink cannot be read, even by root (who can read a chmod-000 file).
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("gone-v1.yaml"))
        .expect("symlink");
    let report = validate(&[dir.path().to_path_buf()], &Since::Off);
    assert_eq!(report.exit_code(), 2);
    assert_eq!(report.diagnostics[0].code, "PV006");

    let empty = tempfile::tempdir().expect("tempdir");
    let report = validate(&[empty.path().to_path_buf()], &Since::Off);
    assert_eq!(report.exit_code(), 2);
    assert!(report.diagnostics[0]
        .message
        .starts_with("no contract files"));

    let report = validate(
        &[Path::new("/definitely/not/here").to_path_buf()],
        &Since::Off,
    );
    assert_eq!(report.exit_code(), 2);
}
