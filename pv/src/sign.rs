//! `pv evidence sign`: adds an SSH signature (SSHSIG, namespace
//! [`pv_evidence::manifest::SIGNATURE_NAMESPACE`]) to run manifests, over DSSE's
//! pre-authentication encoding of the Statement, so the payload (and so every record digest it
//! lists) stays byte for byte what the run wrote.
//!
//! The key is an unencrypted OpenSSH private key file (`--key`, else `$PV_SIGNING_KEY`): a CI
//! secret or a GPU runner's key. What a signature proves, and what it does not, is in
//! `docs/evidence.md` ("Trust model").

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use pv_evidence::manifest::{
    read_manifest, write_envelope, EnvelopeSignature, SIGNATURE_NAMESPACE,
};
use pv_evidence::store::list_evidence_files;

/// Environment variable naming the signing key file (read by this binary only).
pub const SIGNING_KEY_ENV: &str = "PV_SIGNING_KEY";

/// `pv evidence sign` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifests (`*.intoto.json`) or folders holding them (searched recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// OpenSSH private key file (default: $PV_SIGNING_KEY).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Sign only the runs of this `pv verify` invocation.
    #[arg(long, value_name = "ID")]
    pub invocation: Option<String>,
    /// List what would be signed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The key named by `--key` or `$PV_SIGNING_KEY`, loaded.
pub fn signing_key(key: Option<&Path>) -> anyhow::Result<pv_attest::SigningKey> {
    let path = match key {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os(SIGNING_KEY_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => bail!(
                "no signing key: pass --key FILE or set {SIGNING_KEY_ENV} to an OpenSSH private key file"
            ),
        },
    };
    pv_attest::SigningKey::load(&path)
        .with_context(|| format!("loading the signing key {}", path.display()))
}

/// What happened to one manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// A signature was added.
    Added,
    /// This key had signed it already.
    AlreadySigned,
    /// Another invocation's run (skipped).
    OtherInvocation,
}

/// Signs one manifest with `key` (idempotent: a manifest this key signed is left alone).
pub fn sign_manifest(
    path: &Path,
    key: &pv_attest::SigningKey,
    invocation: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<Signed> {
    let m = read_manifest(path)?;
    if invocation.is_some() && m.run.invocation.as_deref() != invocation {
        return Ok(Signed::OtherInvocation);
    }
    let fingerprint = key.fingerprint();
    if m.envelope.signatures.iter().any(|s| s.keyid == fingerprint) {
        return Ok(Signed::AlreadySigned);
    }
    if dry_run {
        return Ok(Signed::Added);
    }
    let sig = key
        .sign(SIGNATURE_NAMESPACE, &m.signed_bytes())
        .with_context(|| format!("signing {}", path.display()))?;
    let mut envelope = m.envelope;
    envelope.signatures.push(EnvelopeSignature {
        keyid: fingerprint,
        sig: sig.to_base64(),
    });
    write_envelope(path, &envelope).with_context(|| format!("writing {}", path.display()))?;
    Ok(Signed::Added)
}

/// Every manifest under `paths` (files given directly, or found in folders).
pub fn manifests_under(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(
                list_evidence_files(p)
                    .with_context(|| format!("listing {}", p.display()))?
                    .manifests,
            );
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

/// Signs every manifest under `paths`; returns (added, already signed).
pub fn sign_all(
    paths: &[PathBuf],
    key: &pv_attest::SigningKey,
    invocation: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<(usize, usize)> {
    let (mut added, mut already) = (0, 0);
    for m in manifests_under(paths)? {
        match sign_manifest(&m, key, invocation, dry_run)? {
            Signed::Added => {
                added += 1;
                if dry_run {
                    println!("would sign {}", m.display());
                }
            }
            Signed::AlreadySigned => already += 1,
            Signed::OtherInvocation => {}
        }
    }
    Ok((added, already))
}

/// Runs `pv evidence sign`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = signing_key(args.key.as_deref())?;
    let (added, already) = sign_all(&args.paths, &key, args.invocation.as_deref(), args.dry_run)?;
    eprintln!(
        "pv evidence sign: {} {added} manifest(s) with {}; {already} already signed by it",
        if args.dry_run { "would sign" } else { "signed" },
        key.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}
