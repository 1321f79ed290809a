//! Interoperability with OpenSSH's own `ssh-keygen`: signatures pv makes verify there, and
//! signatures `ssh-keygen -Y sign` makes verify here, for every key type ssh-keygen makes by
//! default for Ed25519, ECDSA and RSA.
//!
//! These tests need `ssh-keygen` (package openssh-client); without it they fail, so that a CI
//! machine missing it cannot report interoperability it never checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use pv_attest::{AllowedSigners, AttestError, SigningKey, SshSignature, VerifyError};

const NS: &str = "pv-test";
const PRINCIPAL: &str = "ci@example.com";
const MESSAGE: &[u8] = b"{\"_type\":\"https://in-toto.io/Statement/v1\"}\n";

/// The `ssh-keygen` to test against: `/usr/bin/ssh-keygen`, or the first on `PATH`.
fn ssh_keygen() -> PathBuf {
    let standard = PathBuf::from("/usr/bin/ssh-keygen");
    if standard.is_file() {
        return standard;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("ssh-keygen"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "ssh-keygen not found (not at /usr/bin/ssh-keygen nor on PATH): these \
                 interoperability tests need OpenSSH; install openssh-client \
                 (e.g. `apt-get install openssh-client`)"
            )
        })
}

/// Runs ssh-keygen with `args` in `dir`, stdin from `stdin` (or nothing).
fn run(dir: &Path, args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new(ssh_keygen());
    cmd.args(args).current_dir(dir);
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    cmd.output().unwrap()
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a key with ssh-keygen: `-t TYPE [extra] -N PASSPHRASE -f KEY -C test`.
fn keygen(dir: &Path, name: &str, key_type: &str, extra: &[&str], passphrase: &str) -> PathBuf {
    let mut args = vec!["-q", "-t", key_type];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-N", passphrase, "-f", name, "-C", "test"]);
    check(&run(dir, &args, None), &format!("ssh-keygen -t {key_type}"));
    dir.join(name)
}

/// The `allowed_signers` line for a `.pub` file, as `PRINCIPAL keytype base64`.
fn allowed_line(pub_file: &Path) -> String {
    let text = std::fs::read_to_string(pub_file).unwrap();
    let mut words = text.split_whitespace();
    let (kt, b64) = (words.next().unwrap(), words.next().unwrap());
    format!("{PRINCIPAL} {kt} {b64}\n")
}

#[test]
fn pv_signature_verifies_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_path = keygen(d, "key", "ed25519", &[], "");
    let key = SigningKey::load(&key_path).unwrap();

    // The key ssh-keygen reports is the key pv loaded.
    let listed = run(d, &["-l", "-f", "key.pub"], None);
    check(&listed, "ssh-keygen -l");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&key.fingerprint()),
        "{listed} vs {}",
        key.fingerprint()
    );

    std::fs::write(d.join("allowed"), allowed_line(&d.join("key.pub"))).unwrap();
    std::fs::write(d.join("msg"), MESSAGE).unwrap();
    let sig = key.sign(NS, MESSAGE).unwrap();
    std::fs::write(d.join("msg.sig"), sig.to_armored()).unwrap();

    let verify = [
        "-Y", "verify", "-f", "allowed", "-I", PRINCIPAL, "-n", NS, "-s", "msg.sig",
    ];
    check(
        &run(d, &verify, Some(&d.join("msg"))),
        "ssh-keygen -Y verify",
    );

    // A tampered message must fail there too.
    let mut tampered = MESSAGE.to_vec();
    tampered[3] ^= 1;
    std::fs::write(d.join("tampered"), &tampered).unwrap();
    let out = run(d, &verify, Some(&d.join("tampered")));
    assert!(
        !out.status.success(),
        "ssh-keygen accepted a tampered message: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // And the wrong namespace.
    let other_ns = [
        "-Y", "verify", "-f", "allowed", "-I", PRINCIPAL, "-n", "git", "-s", "msg.sig",
    ];
    assert!(!run(d, &other_ns, Some(&d.join("msg"))).status.success());
}

/// The fingerprint `ssh-keygen -l` prints for a key file.
fn ssh_keygen_fingerprint(dir: &Path, key_file: &str) -> String {
    let out = run(dir, &["-l", "-f", key_file], None);
    check(&out, "ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in `{text}`"))
        .to_string()
}

/// How pv fared with the private key of a key pair made by ssh-keygen.
#[derive(Debug, PartialEq)]
enum PrivateKeyOutcome {
    /// Loaded, signed, and ssh-keygen verified the signature.
    SignedAndVerified,
    /// The known ssh-key 0.6 ECDSA decoding bug, reported as such.
    UnreadableEcdsa,
}

/// (b)/(c): ssh-keygen signs MESSAGE; pv verifies it, refuses a tampered message, and re-armors
/// it byte for byte. Then pv signs with the same private key and ssh-keygen verifies that.
fn ssh_keygen_signature_verifies_with_pv(key_type: &str, extra: &[&str]) -> PrivateKeyOutcome {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_path = keygen(d, "key", key_type, extra, "");
    std::fs::write(d.join("msg"), MESSAGE).unwrap();
    check(
        &run(d, &["-Y", "sign", "-f", "key", "-n", NS, "msg"], None),
        "ssh-keygen -Y sign",
    );
    let armored = std::fs::read_to_string(d.join("msg.sig")).unwrap();
    let sig = SshSignature::from_armored(&armored).unwrap();
    // pv writes the armored form byte for byte as ssh-keygen does.
    assert_eq!(sig.to_armored(), armored);
    assert_eq!(sig.namespace(), NS);
    assert_eq!(sig.fingerprint(), ssh_keygen_fingerprint(d, "key.pub"));

    let file =
        AllowedSigners::load(&write(d, "allowed", &allowed_line(&d.join("key.pub")))).unwrap();
    let ok = file.verify(NS, MESSAGE, &sig, SystemTime::now()).unwrap();
    assert!(ok.vouches_as(PRINCIPAL));
    assert_eq!(ok.fingerprint, sig.fingerprint());

    let mut tampered = MESSAGE.to_vec();
    tampered[0] ^= 0x20;
    let err = file
        .verify(NS, &tampered, &sig, SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");

    // The same signature through DSSE's base64 form.
    let again = SshSignature::from_base64(&sig.to_base64()).unwrap();
    assert!(file.verify(NS, MESSAGE, &again, SystemTime::now()).is_ok());

    // pv's own signature with the ssh-keygen key verifies with ssh-keygen.
    let key = match SigningKey::load(&key_path) {
        Ok(key) => key,
        Err(AttestError::UnreadableEcdsaKey { .. }) if key_type == "ecdsa" => {
            return PrivateKeyOutcome::UnreadableEcdsa;
        }
        Err(e) => panic!("loading the {key_type} key: {e}"),
    };
    assert_eq!(key.fingerprint(), sig.fingerprint());
    std::fs::write(
        d.join("msg.sig"),
        key.sign(NS, MESSAGE).unwrap().to_armored(),
    )
    .unwrap();
    let verify = [
        "-Y", "verify", "-f", "allowed", "-I", PRINCIPAL, "-n", NS, "-s", "msg.sig",
    ];
    check(
        &run(d, &verify, Some(&d.join("msg"))),
        &format!("ssh-keygen -Y verify of pv's {key_type} signature"),
    );
    PrivateKeyOutcome::SignedAndVerified
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn ssh_keygen_ed25519_signature_verifies_with_pv() {
    assert_eq!(
        ssh_keygen_signature_verifies_with_pv("ed25519", &[]),
        PrivateKeyOutcome::SignedAndVerified
    );
}

/// About 1 in 256 P-256 keys hits the ssh-key 0.6 decoding bug; the signature checks run for
/// every key, the pv-signs half for the others.
#[test]
fn ssh_keygen_ecdsa_signature_verifies_with_pv() {
    ssh_keygen_signature_verifies_with_pv("ecdsa", &[]);
}

#[test]
fn ssh_keygen_ecdsa_p384_signature_verifies_with_pv() {
    ssh_keygen_signature_verifies_with_pv("ecdsa", &["-b", "384"]);
}

#[test]
fn ssh_keygen_rsa_signature_verifies_with_pv() {
    // RSA signing goes through pv's workaround for ssh-key 0.6.7's RSA key conversion.
    assert_eq!(
        ssh_keygen_signature_verifies_with_pv("rsa", &["-b", "2048"]),
        PrivateKeyOutcome::SignedAndVerified
    );
}

/// P-521 keys hit the ssh-key 0.6 ECDSA decoding bug half the time (the secret's top byte is
/// 0 or 1), so a few keys show both outcomes: the clear error, and working keys. When an
/// ssh-key release fixes RustCrypto/SSH#350 this test fails: then drop `UnreadableEcdsaKey`.
#[test]
fn ecdsa_p521_keys_sign_or_give_the_known_bug_error() {
    let mut outcomes = Vec::new();
    for _ in 0..64 {
        outcomes.push(ssh_keygen_signature_verifies_with_pv(
            "ecdsa",
            &["-b", "521"],
        ));
        if outcomes.contains(&PrivateKeyOutcome::SignedAndVerified)
            && outcomes.contains(&PrivateKeyOutcome::UnreadableEcdsa)
        {
            break;
        }
    }
    assert!(
        outcomes.contains(&PrivateKeyOutcome::SignedAndVerified),
        "no P-521 key in {} loaded",
        outcomes.len()
    );
    assert!(
        outcomes.contains(&PrivateKeyOutcome::UnreadableEcdsa),
        "all {} P-521 keys loaded: has ssh-key fixed its ECDSA decoding?",
        outcomes.len()
    );
}

#[test]
fn unreadable_ecdsa_key_error_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..64 {
        let name = format!("key{i}");
        let path = keygen(dir.path(), &name, "ecdsa", &["-b", "521"], "");
        if let Err(e) = SigningKey::load(&path) {
            let text = e.to_string();
            assert!(
                matches!(e, AttestError::UnreadableEcdsaKey { .. }),
                "{text}"
            );
            assert!(text.contains("ssh-keygen -t ed25519"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            return;
        }
    }
    panic!("64 P-521 keys all loaded: has ssh-key fixed its ECDSA decoding?");
}

#[test]
fn encrypted_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = keygen(dir.path(), "key", "ed25519", &[], "secret");
    let err = SigningKey::load(&key_path).unwrap_err();
    assert!(matches!(err, AttestError::EncryptedKey { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("cannot prompt for passphrases"), "{text}");
    assert!(text.contains("unencrypted key"), "{text}");
    assert!(text.contains("CI secret"), "{text}");
    assert!(text.contains(&key_path.display().to_string()), "{text}");
}

#[test]
fn allowed_signers_options_agree_with_ssh_keygen() {
    // The same file, checked by both: namespaces= and valid-before (in the past) refuse in
    // both; a plain line accepts in both.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(d, "key", "ed25519", &[], "");
    let key = SigningKey::load(&d.join("key")).unwrap();
    let pk = key.public_key_openssh();
    std::fs::write(d.join("msg"), MESSAGE).unwrap();
    let sig = key.sign(NS, MESSAGE).unwrap();
    std::fs::write(d.join("msg.sig"), sig.to_armored()).unwrap();
    let verify = [
        "-Y", "verify", "-f", "allowed", "-I", PRINCIPAL, "-n", NS, "-s", "msg.sig",
    ];
    for (line, accepted) in [
        (format!("{PRINCIPAL} {pk}"), true),
        (format!("*@example.com,!evil@example.com {pk}"), true),
        (format!("{PRINCIPAL} namespaces=\"git,pv-*\" {pk}"), true),
        (format!("{PRINCIPAL} namespaces=\"other\" {pk}"), false),
        (
            format!("{PRINCIPAL} valid-before=\"20200101Z\" {pk}"),
            false,
        ),
        (format!("{PRINCIPAL} valid-after=\"29990101Z\" {pk}"), false),
        (format!("*@example.com,!{PRINCIPAL} {pk}"), false),
    ] {
        let path = write(d, "allowed", &format!("{line}\n"));
        let theirs = run(d, &verify, Some(&d.join("msg"))).status.success();
        let ours = AllowedSigners::load(&path)
            .unwrap()
            .verify(NS, MESSAGE, &sig, SystemTime::now())
            .is_ok_and(|v| v.vouches_as(PRINCIPAL));
        assert_eq!(theirs, accepted, "ssh-keygen on `{line}`");
        assert_eq!(ours, accepted, "pv on `{line}`");
    }
}
