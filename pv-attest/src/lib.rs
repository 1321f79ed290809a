//! # pv-attest: SSH signatures over DSSE payloads, and who may make them
//!
//! pv signs its run manifests (DSSE envelopes that hold in-toto Statements) with SSH keys, in
//! the SSHSIG format that `ssh-keygen -Y sign` and git (`gpg.format=ssh`) use, and checks them
//! against an OpenSSH `allowed_signers` file. Reusing that format means a project needs no new
//! key infrastructure: the key CI already holds, the file git already reads, and
//! `ssh-keygen -Y verify` can check any signature pv makes, with no pv installed.
//!
//! This crate is only the cryptographic and key-format part, on bytes; it knows nothing of pv's
//! records. All cryptography (key parsing, SSHSIG signing and verification, fingerprints) is the
//! RustCrypto `ssh-key` crate's; this crate adds the DSSE pre-authentication encoding, the
//! `allowed_signers` text format and error messages a person can act on.
//!
//! ## What a verified signature proves, and what it does not
//!
//! A signature that [`AllowedSigners::verify`] accepts proves that the holder of a private key
//! listed in `allowed_signers` signed **these exact bytes** for **this namespace**, at a time the
//! line's `valid-after`/`valid-before` allow (as claimed by the verifier's clock, not by the
//! signer: SSHSIG carries no signing time). With DSSE the signed bytes are the
//! pre-authentication encoding of the payload type and body (`pv_evidence::manifest::pae`,
//! pv's one implementation of it), so the type is bound too.
//!
//! It does **not** prove that the tests named in a manifest really ran, that they measured
//! honestly, or that the machine holding the key was not compromised: a key proves who vouches
//! for a record, never that the record is true. Anyone with the key file (for instance a CI
//! job's secret) can sign anything.
//!
//! ## Map of the crate
//! - [`SigningKey`]: an OpenSSH private key: load, generate (for tests and demos), sign.
//! - [`SshSignature`]: one SSHSIG blob, as base64 (a DSSE `sig`) or armored (an ssh-keygen
//!   `.sig` file).
//! - [`AllowedSigners`]: an OpenSSH `allowed_signers` file, and [`AllowedSigners::verify`],
//!   which answers [`Verified`] (who vouches) or [`VerifyError`] (why not).
//! - [`AttestError`] (keys and signature encodings) and [`AllowedSignersError`] (the file, by
//!   line).

mod allowed;
mod key;
mod pattern;
mod time;

pub use allowed::{AllowedSigners, AllowedSignersError, Verified, VerifyError};
pub use key::{AttestError, SigningKey, SshSignature};
