//! Private keys and SSHSIG signatures, both wrappers over the `ssh-key` crate.

use std::fmt;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Base64Unpadded, Encoding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use ssh_encoding::{Decode, Encode};
use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, HashAlg, LineEnding, Mpint, PrivateKey, PublicKey, SshSig};
use zeroize::Zeroizing;

/// What can go wrong with keys and signature encodings. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The key file could not be read.
    #[error("cannot read private key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is protected by a passphrase.
    #[error(
        "{origin}: the private key is encrypted with a passphrase, and pv cannot prompt for \
         passphrases; use an unencrypted key (`ssh-keygen -t ed25519 -N '' -f KEY`) kept as a \
         CI secret, or remove the passphrase of a copy with `ssh-keygen -p -N '' -f COPY`"
    )]
    EncryptedKey {
        /// The key file, or "the key text" when parsed from a string.
        origin: String,
    },
    /// The text is not an OpenSSH private key pv can use.
    #[error(
        "{origin}: not a usable OpenSSH private key ({reason}); pv reads the format that \
         `ssh-keygen` writes, beginning \"-----BEGIN OPENSSH PRIVATE KEY-----\" (rewrite an \
         older PEM key in that format with `ssh-keygen -p -f KEY`)"
    )]
    PrivateKey {
        /// The key file, or "the key text" when parsed from a string.
        origin: String,
        /// What `ssh-key` objected to.
        reason: String,
    },
    /// An ECDSA key that ssh-key 0.6 cannot read (see the message).
    #[error(
        "{origin}: this ECDSA key cannot be read by the ssh-key library pv uses: version 0.6 \
         rejects ECDSA keys whose secret begins with a zero byte (about 1 in 256 P-256 and \
         P-384 keys, 1 in 2 P-521 keys; RustCrypto/SSH issue #350); use an Ed25519 key \
         (`ssh-keygen -t ed25519 -N '' -f KEY`), or make a new ECDSA key"
    )]
    UnreadableEcdsaKey {
        /// The key file, or "the key text" when parsed from a string.
        origin: String,
    },
    /// Signing failed.
    #[error("cannot sign with key {fingerprint}: {reason}")]
    Sign {
        /// The key's fingerprint.
        fingerprint: String,
        /// Why.
        reason: String,
    },
    /// The text is not an SSH signature.
    #[error("not an SSH signature (SSHSIG): {reason}")]
    Signature {
        /// What was wrong with it.
        reason: String,
    },
}

/// An OpenSSH private key that can make SSHSIG signatures.
///
/// `Debug` shows only the fingerprint, never key material.
#[derive(Clone)]
pub struct SigningKey {
    key: PrivateKey,
    /// The private key in OpenSSH format, kept so that [`SigningKey::to_openssh`] cannot fail;
    /// wiped from memory on drop.
    pem: Zeroizing<String>,
    /// `keytype base64`, no comment.
    public: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads an OpenSSH private key file (as `ssh-keygen` writes it). An encrypted key is an
    /// error ([`AttestError::EncryptedKey`]): pv runs unattended and cannot ask for a
    /// passphrase.
    pub fn load(path: &Path) -> Result<SigningKey, AttestError> {
        let bytes = std::fs::read(path).map_err(|source| AttestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|_| AttestError::PrivateKey {
            origin: origin.clone(),
            reason: "the file is not text".to_string(),
        })?;
        Self::parse(&text, origin)
    }

    /// Parses an OpenSSH private key from its text (see [`SigningKey::load`]).
    pub fn from_openssh(text: &str) -> Result<SigningKey, AttestError> {
        Self::parse(text, "the key text".to_string())
    }

    fn parse(text: &str, origin: String) -> Result<SigningKey, AttestError> {
        let key = match PrivateKey::from_openssh(text.trim()) {
            Ok(key) => key,
            // Old-style PEM keys say "Proc-Type: 4,ENCRYPTED"; ssh-key cannot read them at all,
            // but the passphrase is the problem worth naming.
            Err(_) if text.contains("ENCRYPTED") => {
                return Err(AttestError::EncryptedKey { origin });
            }
            Err(ssh_key::Error::Encoding(ssh_encoding::Error::Length)) if mentions_ecdsa(text) => {
                return Err(AttestError::UnreadableEcdsaKey { origin });
            }
            Err(e) => {
                return Err(AttestError::PrivateKey {
                    origin,
                    reason: e.to_string(),
                });
            }
        };
        if key.is_encrypted() {
            return Err(AttestError::EncryptedKey { origin });
        }
        Self::from_private(key).map_err(|reason| AttestError::PrivateKey { origin, reason })
    }

    fn from_private(key: PrivateKey) -> Result<SigningKey, String> {
        let pem = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
        let public = public_openssh(key.public_key().key_data())?;
        Ok(SigningKey { key, pem, public })
    }

    /// A fresh Ed25519 key from the operating system's random number generator, for tests and
    /// key-less demos.
    ///
    /// # Panics
    /// If the operating system's random number generator fails, which leaves nothing to sign
    /// safely with.
    pub fn generate_ed25519() -> SigningKey {
        let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
            .expect("the operating system's random number generator failed");
        // Encoding a key just generated in memory has no input that could be malformed.
        Self::from_private(key).expect("a freshly generated Ed25519 key encodes")
    }

    /// The private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`), unencrypted,
    /// for writing key files. The returned string is an ordinary one: the caller owns the
    /// secret it holds.
    pub fn to_openssh(&self) -> String {
        self.pem.as_str().to_owned()
    }

    /// The public key as one `allowed_signers`/`authorized_keys` field pair:
    /// `ssh-ed25519 AAAA...`, without a comment.
    pub fn public_key_openssh(&self) -> String {
        self.public.clone()
    }

    /// The SHA-256 fingerprint, `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Signs `message` for `namespace` in the SSHSIG format, hashing with SHA-512 as
    /// `ssh-keygen -Y sign` does. The namespace binds the signature to one use (pv's, git's,
    /// a file's), so a signature made for one can never be accepted as another.
    pub fn sign(&self, namespace: &str, message: &[u8]) -> Result<SshSignature, AttestError> {
        let sign_error = |reason: String| AttestError::Sign {
            fingerprint: self.fingerprint(),
            reason,
        };
        if namespace.is_empty() {
            return Err(sign_error(
                "the namespace is empty; SSHSIG requires one".into(),
            ));
        }
        if matches!(
            self.key.algorithm(),
            Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256
        ) {
            return Err(sign_error(
                "it is a hardware security key (sk-*), which needs its authenticator; pv signs \
                 with a plain key file"
                    .into(),
            ));
        }
        let sig = match self.key.key_data() {
            KeypairData::Rsa(keypair) => sign_rsa(keypair, namespace, message),
            _ => self
                .key
                .sign(namespace, HashAlg::Sha512, message)
                .map_err(|e| e.to_string()),
        }
        .map_err(sign_error)?;
        // A signature pv hands out must verify: this catches a signing bug (such as the one
        // `sign_rsa` works around) or a hardware fault here rather than at a verifier.
        self.key
            .public_key()
            .verify(namespace, message, &sig)
            .map_err(|e| sign_error(format!("the signature made does not verify ({e})")))?;
        SshSignature::from_sig(sig).map_err(sign_error)
    }
}

/// SSHSIG with an RSA key: `rsa-sha2-512` (PKCS#1 v1.5 over SHA-512), as `ssh-keygen` makes.
///
/// Why not `PrivateKey::sign`: ssh-key 0.6.7 converts its RSA keypair to an `rsa` key with
/// the primes (p, p) instead of (p, q), which `rsa` >= 0.9.7 rightly rejects, so every RSA
/// signature fails with "cryptographic error" (RustCrypto/SSH issue #387; fixed upstream by
/// PR #217, not released in 0.6). This takes the same steps with the right primes, all
/// through the libraries: ssh-key's SSHSIG signed data, the `rsa` crate's signer, ssh-key's
/// signature types. Drop it when an ssh-key release carries the fix.
fn sign_rsa(keypair: &RsaKeypair, namespace: &str, message: &[u8]) -> Result<SshSig, String> {
    let big = |m: &Mpint| rsa::BigUint::try_from(m).map_err(|e| e.to_string());
    let private = rsa::RsaPrivateKey::from_components(
        big(&keypair.public.n)?,
        big(&keypair.public.e)?,
        big(&keypair.private.d)?,
        vec![big(&keypair.private.p)?, big(&keypair.private.q)?],
    )
    .map_err(|e| format!("invalid RSA key: {e}"))?;
    if private.size() * 8 < MIN_RSA_BITS {
        return Err(format!(
            "RSA keys shorter than {MIN_RSA_BITS} bits are refused; make a new key with \
             `ssh-keygen -t ed25519`"
        ));
    }
    let data =
        SshSig::signed_data(namespace, HashAlg::Sha512, message).map_err(|e| e.to_string())?;
    let raw = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private)
        .try_sign(&data)
        .map_err(|e| e.to_string())?;
    let signature = ssh_key::Signature::new(
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        raw.to_vec(),
    )
    .map_err(|e| e.to_string())?;
    SshSig::new(
        KeyData::Rsa(keypair.public.clone()),
        namespace,
        HashAlg::Sha512,
        signature,
    )
    .map_err(|e| e.to_string())
}

/// The shortest RSA key pv signs with, as ssh-key's own minimum.
const MIN_RSA_BITS: usize = 2048;

/// Whether OpenSSH private key text holds an ECDSA key: its key type appears in the clear in
/// the decoded container (the public key comes before the private section). Used only to pick
/// the error message for ssh-key's ECDSA decoding bug.
fn mentions_ecdsa(text: &str) -> bool {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    Base64::decode_vec(&body).is_ok_and(|bytes| bytes.windows(16).any(|w| w == b"ecdsa-sha2-nistp"))
}

/// `keytype base64` of a public key, without a comment.
fn public_openssh(key: &KeyData) -> Result<String, String> {
    PublicKey::new(key.clone(), "")
        .to_openssh()
        .map(|s| s.trim_end().to_string())
        .map_err(|e| e.to_string())
}

/// One SSHSIG signature: the signer's public key, the namespace, the hash algorithm and the
/// signature itself (PROTOCOL.sshsig).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSignature {
    sig: SshSig,
    /// The binary SSHSIG blob, encoded once so that the accessors cannot fail.
    blob: Vec<u8>,
    /// The armored form, likewise.
    armored: String,
}

impl SshSignature {
    fn from_sig(sig: SshSig) -> Result<SshSignature, String> {
        let mut blob = Vec::new();
        sig.encode(&mut blob).map_err(|e| e.to_string())?;
        let armored = sig.to_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        Ok(SshSignature { sig, blob, armored })
    }

    fn from_blob(blob: &[u8]) -> Result<SshSignature, AttestError> {
        let bad = |reason: String| AttestError::Signature { reason };
        let mut reader = blob;
        let sig = SshSig::decode(&mut reader).map_err(|e| bad(e.to_string()))?;
        if !reader.is_empty() {
            return Err(bad(format!("{} bytes follow the signature", reader.len())));
        }
        Self::from_sig(sig).map_err(bad)
    }

    /// The binary SSHSIG blob in standard, padded base64: what goes in a DSSE envelope's
    /// `sig` field.
    pub fn to_base64(&self) -> String {
        Base64::encode_string(&self.blob)
    }

    /// Reads a signature from base64, standard or URL-safe, padded or not: DSSE allows every
    /// one of these, so a verifier must accept them all. Surrounding whitespace is ignored.
    pub fn from_base64(s: &str) -> Result<SshSignature, AttestError> {
        let s = s.trim();
        let url_safe = s.contains(['-', '_']);
        if url_safe && s.contains(['+', '/']) {
            return Err(AttestError::Signature {
                reason: "the base64 mixes the standard (+/) and URL-safe (-_) alphabets".into(),
            });
        }
        let standard: String = s
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let blob = Base64Unpadded::decode_vec(&standard).map_err(|e| AttestError::Signature {
            reason: format!("bad base64: {e}"),
        })?;
        Self::from_blob(&blob)
    }

    /// The armored form, `-----BEGIN SSH SIGNATURE-----`, byte for byte as `ssh-keygen -Y sign`
    /// writes its `.sig` files (70-column lines, LF, a final newline).
    pub fn to_armored(&self) -> String {
        self.armored.clone()
    }

    /// Reads the armored form (an `ssh-keygen -Y sign` `.sig` file).
    pub fn from_armored(s: &str) -> Result<SshSignature, AttestError> {
        let sig = SshSig::from_pem(s.trim()).map_err(|e| AttestError::Signature {
            reason: format!("bad armored signature: {e}"),
        })?;
        Self::from_sig(sig).map_err(|reason| AttestError::Signature { reason })
    }

    /// The namespace the signature was made for.
    pub fn namespace(&self) -> &str {
        self.sig.namespace()
    }

    /// The SHA-256 fingerprint of the signer's public key, `SHA256:...`. Only a claim until
    /// the signature is verified.
    pub fn fingerprint(&self) -> String {
        self.sig
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// The signer's public key as `keytype base64` (no comment), the form an `allowed_signers`
    /// line needs after its principals. Only a claim until the signature is verified.
    pub fn public_key_openssh(&self) -> String {
        // A key that decoded re-encodes; the fingerprint is the fallback that still names it.
        public_openssh(self.sig.public_key()).unwrap_or_else(|_| self.fingerprint())
    }

    pub(crate) fn inner(&self) -> &SshSig {
        &self.sig
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_openssh_text() {
        let key = SigningKey::generate_ed25519();
        let again = SigningKey::from_openssh(&key.to_openssh()).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_eq!(again.public_key_openssh(), key.public_key_openssh());
        assert!(key.public_key_openssh().starts_with("ssh-ed25519 AAAA"));
        assert_eq!(key.public_key_openssh().split(' ').count(), 2);
        assert!(key.fingerprint().starts_with("SHA256:"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn signature_knows_its_namespace_and_signer() {
        let key = SigningKey::generate_ed25519();
        let sig = key.sign("pv-test", b"hello").unwrap();
        assert_eq!(sig.namespace(), "pv-test");
        assert_eq!(sig.fingerprint(), key.fingerprint());
        assert_eq!(sig.public_key_openssh(), key.public_key_openssh());
        assert_eq!(sig.inner().hash_alg(), HashAlg::Sha512);
    }

    #[test]
    fn empty_namespace_is_refused() {
        let key = SigningKey::generate_ed25519();
        let err = key.sign("", b"hello").unwrap_err();
        assert!(err.to_string().contains("namespace is empty"), "{err}");
    }

    #[test]
    fn base64_standard_and_url_safe_padded_or_not() {
        let key = SigningKey::generate_ed25519();
        // Sign until the blob's base64 holds both '+' and '/' and needs padding, so each
        // conversion below really changes the text it decodes. An Ed25519 blob's length
        // depends only on the namespace's, so the namespace length varies too.
        let (sig, std) = (0u32..3_000)
            .map(|i| {
                let namespace = format!("pv-{}", "x".repeat(i as usize % 3));
                let sig = key.sign(&namespace, &i.to_le_bytes()).unwrap();
                let b64 = sig.to_base64();
                (sig, b64)
            })
            .find(|(_, b)| b.contains('+') && b.contains('/') && b.ends_with('='))
            .expect("no signature in 3000 had '+', '/' and padding");
        let url: String = std
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        for text in [
            std.clone(),
            std.trim_end_matches('=').to_string(),
            url.clone(),
            url.trim_end_matches('=').to_string(),
        ] {
            assert_eq!(SshSignature::from_base64(&text).unwrap(), sig, "{text}");
        }
        assert!(SshSignature::from_base64("not base64!").is_err());
        assert!(SshSignature::from_base64(&format!("{}-", &std[..std.len() - 2])).is_err());
        // Valid base64 of something that is not an SSHSIG blob.
        assert!(SshSignature::from_base64("aGVsbG8gd29ybGQ=").is_err());
    }

    #[test]
    fn trailing_bytes_after_the_blob_are_refused() {
        let key = SigningKey::generate_ed25519();
        let sig = key.sign("pv-test", b"m").unwrap();
        let mut blob = sig.blob.clone();
        blob.push(0);
        let err = SshSignature::from_blob(&blob).unwrap_err();
        assert!(err.to_string().contains("1 bytes follow"), "{err}");
    }

    #[test]
    fn armored_round_trip() {
        let key = SigningKey::generate_ed25519();
        let sig = key.sign("pv-test", b"hello").unwrap();
        let armored = sig.to_armored();
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
        assert!(armored.ends_with("-----END SSH SIGNATURE-----\n"));
        assert!(armored.lines().all(|l| l.len() <= 70));
        let back = SshSignature::from_armored(&armored).unwrap();
        assert_eq!(back, sig);
        assert_eq!(back.to_base64(), sig.to_base64());
        assert!(SshSignature::from_armored("-----BEGIN SSH SIGNATURE-----\n").is_err());
    }

    #[test]
    fn garbage_key_text_is_a_clear_error() {
        let err = SigningKey::from_openssh("ssh-ed25519 AAAA").unwrap_err();
        assert!(matches!(err, AttestError::PrivateKey { .. }), "{err}");
        assert!(
            err.to_string().contains("BEGIN OPENSSH PRIVATE KEY"),
            "{err}"
        );
        let err = SigningKey::load(Path::new("/nonexistent/pv-attest-key")).unwrap_err();
        assert!(matches!(err, AttestError::Read { .. }), "{err}");
    }
}
