//! OpenSSH `allowed_signers` files (ssh-keygen(1), ALLOWED SIGNERS) and verification against
//! them.
//!
//! One entry per line: `principals [options] keytype base64-key [comment]`. Empty lines and
//! lines starting with `#` are ignored. `principals` is an OpenSSH pattern list, optionally in
//! double quotes. The options, comma-separated and before the key type:
//!
//! - `cert-authority`: the key is a certificate authority. pv does not support certificates,
//!   so such a line is parsed and kept but never matches a signature's key; a key listed only
//!   there is refused as not allowed.
//! - `namespaces="a,b"`: the namespaces (a pattern list) the key may sign for.
//! - `valid-after="TIME"`, `valid-before="TIME"`: when the key may be used, checked against
//!   the time given to [`AllowedSigners::verify`] (both ends included, as OpenSSH does). TIME
//!   is `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optionally followed by `Z`.
//!   **Deviation from OpenSSH:** a time without `Z` is read as UTC, not in the verifier's
//!   local time zone, so that a verdict never depends on where it is checked.
//!
//! Anything else (an unknown option, an unquoted option value, bad base64, an unknown key
//! type) is an error naming the line, as `ssh-keygen` refuses such a file too.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ssh_key::public::KeyData;
use ssh_key::PublicKey;

use crate::key::SshSignature;
use crate::pattern::matches_list;
use crate::time::{format_utc, parse_openssh_time, unix_seconds};

/// The key types OpenSSH writes in `allowed_signers` (and `authorized_keys`).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// The shape of a line, for error messages.
const LINE_SHAPE: &str = "an entry is `principals [options] keytype base64-key [comment]`";

/// A problem in an `allowed_signers` file, at a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", location(.path, *.line))]
pub struct AllowedSignersError {
    /// The file, when it was read from one.
    pub path: Option<PathBuf>,
    /// The 1-based line number; 0 when the problem is the whole file (it could not be read).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn location(path: &Option<PathBuf>, line: usize) -> String {
    let file = path.as_ref().map_or_else(
        || "allowed_signers".to_string(),
        |p| p.display().to_string(),
    );
    if line == 0 {
        file
    } else {
        format!("{file}:{line}")
    }
}

/// Why a signature was not accepted. Every message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not match the message (or is malformed for its key).
    #[error(
        "the signature by key {fingerprint} does not match these bytes ({reason}): the signed \
         content or the signature was altered after signing, or they do not belong together; \
         sign the content again"
    )]
    BadSignature {
        /// The key the signature claims.
        fingerprint: String,
        /// What the cryptographic check said.
        reason: String,
    },
    /// The signature was made for another namespace.
    #[error(
        "the signature was made for namespace \"{found}\", but \"{expected}\" is required: sign \
         with namespace \"{expected}\" (`ssh-keygen -Y sign -n {expected}`)"
    )]
    WrongNamespace {
        /// The namespace the verifier requires.
        expected: String,
        /// The namespace in the signature.
        found: String,
    },
    /// The key is on no line of the file (cert-authority lines do not count).
    #[error(
        "key {fingerprint} is not in allowed_signers: if it should vouch, add a line \
         `PRINCIPAL KEYTYPE BASE64` with its public key (`ssh-keygen -l -f KEY.pub` prints a \
         key's fingerprint)"
    )]
    KeyNotAllowed {
        /// The signer's key.
        fingerprint: String,
    },
    /// The key is listed, but no line's `namespaces=` allows this namespace.
    #[error(
        "key {fingerprint} is in allowed_signers, but no line of it allows namespace \
         \"{namespace}\": add \"{namespace}\" to that line's namespaces=\"...\" option"
    )]
    NamespaceNotAllowed {
        /// The signer's key.
        fingerprint: String,
        /// The namespace refused.
        namespace: String,
    },
    /// The key's line is not valid yet at the time checked.
    #[error(
        "key {fingerprint} is allowed only from {valid_after} (allowed_signers line {line}, \
         valid-after), and the time checked is {at}: check the clock, or the line's valid-after"
    )]
    NotYetValid {
        /// The signer's key.
        fingerprint: String,
        /// The `allowed_signers` line.
        line: usize,
        /// The line's start, `YYYY-MM-DD HH:MM:SS UTC`.
        valid_after: String,
        /// The time checked, likewise.
        at: String,
    },
    /// The key's line is no longer valid at the time checked.
    #[error(
        "key {fingerprint} was allowed only until {valid_before} (allowed_signers line {line}, \
         valid-before), and the time checked is {at}: the key has expired; sign with a current \
         key, or extend the line's valid-before"
    )]
    Expired {
        /// The signer's key.
        fingerprint: String,
        /// The `allowed_signers` line.
        line: usize,
        /// The line's end, `YYYY-MM-DD HH:MM:SS UTC`.
        valid_before: String,
        /// The time checked, likewise.
        at: String,
    },
}

/// A verified signature: who vouches for the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principals of every `allowed_signers` line that accepted the signature, one entry
    /// per line: that line's whole pattern list (e.g. `ci@example.com,!evil@example.com`), kept
    /// whole because a `!` pattern only means something within its list.
    pub principals: Vec<String>,
    /// The signer's key fingerprint, `SHA256:...`.
    pub fingerprint: String,
}

impl Verified {
    /// Whether `identity` (e.g. "ci@example.com") matches one of the principal pattern lists,
    /// with OpenSSH pattern-list semantics: comma-separated patterns, `*` and `?` wildcards,
    /// and a `!`-negated pattern that matches excludes, whatever else in its list matches.
    /// Case-sensitive, as `ssh-keygen -Y verify -I` is.
    pub fn vouches_as(&self, identity: &str) -> bool {
        self.principals
            .iter()
            .any(|list| matches_list(identity, list))
    }
}

/// One `valid-after`/`valid-before` bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    unix: i64,
}

/// One entry of the file.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    principals: String,
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<Bound>,
    valid_before: Option<Bound>,
    key: KeyData,
}

/// A parsed `allowed_signers` file: which keys may vouch for which principals, for which
/// namespaces, when.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
}

impl AllowedSigners {
    /// Parses the text of an `allowed_signers` file (the format: this module's docs). The
    /// first bad line is the error.
    pub fn parse(text: &str) -> Result<AllowedSigners, AllowedSignersError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            match parse_line(raw, line) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(message) => {
                    return Err(AllowedSignersError {
                        path: None,
                        line,
                        message,
                    })
                }
            }
        }
        Ok(AllowedSigners { entries })
    }

    /// Reads and parses an `allowed_signers` file; errors name the file.
    pub fn load(path: &Path) -> Result<AllowedSigners, AllowedSignersError> {
        let text = std::fs::read_to_string(path).map_err(|e| AllowedSignersError {
            path: Some(path.to_path_buf()),
            line: 0,
            message: format!("cannot read the allowed signers file: {e}"),
        })?;
        Self::parse(&text).map_err(|e| AllowedSignersError {
            path: Some(path.to_path_buf()),
            ..e
        })
    }

    /// The number of entries (comment and empty lines not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Verifies `sig` over `message` for `namespace` at time `at`: the signature must be
    /// valid, made with the namespace given, and its key must appear on a line whose options
    /// allow that namespace and time. Returns every principal pattern of every line that
    /// accepts it.
    ///
    /// The checks run in that order, so the error names the first thing wrong: a signature
    /// that does not match its bytes says nothing trustworthy about its key or namespace.
    /// When the key is on several lines and none accepts, a line that allows the namespace
    /// but not the time is reported before a namespace refusal.
    pub fn verify(
        &self,
        namespace: &str,
        message: &[u8],
        sig: &SshSignature,
        at: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let inner = sig.inner();
        let fingerprint = sig.fingerprint();

        // The signature against its own key and namespace: is it a signature of these bytes?
        PublicKey::new(inner.public_key().clone(), "")
            .verify(inner.namespace(), message, inner)
            .map_err(|e| VerifyError::BadSignature {
                fingerprint: fingerprint.clone(),
                reason: e.to_string(),
            })?;
        if inner.namespace() != namespace {
            return Err(VerifyError::WrongNamespace {
                expected: namespace.to_string(),
                found: inner.namespace().to_string(),
            });
        }

        let lines: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| !e.cert_authority && e.key == *inner.public_key())
            .collect();
        if lines.is_empty() {
            return Err(VerifyError::KeyNotAllowed { fingerprint });
        }

        let now = unix_seconds(at);
        let mut principals = Vec::new();
        let mut time_refusal = None;
        for entry in lines {
            if let Some(allowed) = &entry.namespaces {
                if !matches_list(namespace, allowed) {
                    continue;
                }
            }
            if let Some(after) = entry.valid_after.filter(|b| now < b.unix) {
                time_refusal.get_or_insert(VerifyError::NotYetValid {
                    fingerprint: fingerprint.clone(),
                    line: entry.line,
                    valid_after: format_utc(after.unix),
                    at: format_utc(now),
                });
                continue;
            }
            if let Some(before) = entry.valid_before.filter(|b| now > b.unix) {
                time_refusal.get_or_insert(VerifyError::Expired {
                    fingerprint: fingerprint.clone(),
                    line: entry.line,
                    valid_before: format_utc(before.unix),
                    at: format_utc(now),
                });
                continue;
            }
            principals.push(entry.principals.clone());
        }
        if principals.is_empty() {
            return Err(
                time_refusal.unwrap_or_else(|| VerifyError::NamespaceNotAllowed {
                    fingerprint,
                    namespace: namespace.to_string(),
                }),
            );
        }
        Ok(Verified {
            principals,
            fingerprint,
        })
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The next blank-separated word and what follows it.
fn take_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(is_blank);
    match s.find(is_blank) {
        Some(end) => (&s[..end], &s[end..]),
        None => (s, ""),
    }
}

/// The principals field: a word, or a double-quoted string that may hold blanks.
fn take_principals(s: &str) -> Result<(&str, &str), String> {
    if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or("the principals' opening double quote is never closed")?;
        let rest = &quoted[end + 1..];
        if !rest.is_empty() && !rest.starts_with(is_blank) {
            return Err("a blank must follow the principals' closing double quote".into());
        }
        Ok((&quoted[..end], rest))
    } else {
        Ok(take_word(s))
    }
}

/// The options field: up to the first blank outside double quotes (`\"` escapes a quote), as
/// OpenSSH's `sshkey_advance_past_options` reads it.
fn take_options(s: &str) -> Result<(&str, &str), String> {
    let s = s.trim_start_matches(is_blank);
    let mut quoted = false;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if s[i + 1..].starts_with('"') => {
                chars.next();
            }
            '"' => quoted = !quoted,
            c if is_blank(c) && !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err(format!(
            "an option's double quote is never closed in `{s}`; {LINE_SHAPE}"
        ));
    }
    Ok((s, ""))
}

/// The options a line sets.
#[derive(Default)]
struct Options {
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<Bound>,
    valid_before: Option<Bound>,
}

fn parse_line(raw: &str, line: usize) -> Result<Option<Entry>, String> {
    let s = raw.trim_start_matches(is_blank).trim_end();
    if s.is_empty() || s.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = take_principals(s)?;
    if principals.is_empty() {
        return Err(format!("the principals are empty; {LINE_SHAPE}"));
    }
    let (token, rest) = take_options(rest)?;
    if token.ends_with("-cert-v01@openssh.com") {
        return Err(unknown_key_type(token));
    }
    let (options, key_type, rest) = if is_key_type(token) || token.is_empty() {
        (Options::default(), token, rest)
    } else {
        let options = parse_options(token)?;
        let (key_type, rest) = take_word(rest);
        (options, key_type, rest)
    };
    if key_type.is_empty() {
        return Err(format!(
            "the key is missing after `{principals}`; {LINE_SHAPE}"
        ));
    }
    if !is_key_type(key_type) {
        return Err(unknown_key_type(key_type));
    }
    let (base64, _comment) = take_word(rest);
    if base64.is_empty() {
        return Err(format!(
            "the base64 key is missing after `{key_type}`; {LINE_SHAPE}"
        ));
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {base64}")).map_err(|e| {
        format!(
            "the `{key_type}` key is not valid ({e}): check that its base64 was copied whole \
             from the .pub file and that the key type matches it"
        )
    })?;
    Ok(Some(Entry {
        line,
        principals: principals.to_string(),
        cert_authority: options.cert_authority,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key: key.key_data().clone(),
    }))
}

fn is_key_type(word: &str) -> bool {
    KEY_TYPES.contains(&word)
}

fn unknown_key_type(word: &str) -> String {
    if word.ends_with("-cert-v01@openssh.com") {
        format!(
            "`{word}` is a certificate; pv does not support SSH certificates: list the plain \
             public key instead"
        )
    } else {
        format!(
            "unknown key type `{word}`: expected one of {}",
            KEY_TYPES.join(", ")
        )
    }
}

/// Parses the comma-separated options field.
fn parse_options(token: &str) -> Result<Options, String> {
    let mut options = Options::default();
    let mut rest = token;
    loop {
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = &rest[name_end..];
        let value = if let Some(after_eq) = rest.strip_prefix('=') {
            let (value, after) = dequote(name, after_eq)?;
            rest = after;
            Some(value)
        } else {
            None
        };
        let lower = name.to_ascii_lowercase();
        match (lower.as_str(), value) {
            ("cert-authority", None) => {
                if options.cert_authority {
                    return Err("cert-authority is given twice".into());
                }
                options.cert_authority = true;
            }
            ("cert-authority", Some(_)) => {
                return Err("cert-authority takes no value".into());
            }
            ("namespaces", Some(value)) => {
                if options.namespaces.is_some() {
                    return Err("namespaces is given twice: list them all in one option".into());
                }
                if value.is_empty() {
                    return Err("namespaces=\"\" allows no namespace: name them, e.g. \
                         namespaces=\"pv\", or drop the option to allow every namespace"
                        .into());
                }
                options.namespaces = Some(value);
            }
            (which @ ("valid-after" | "valid-before"), Some(value)) => {
                let unix = parse_openssh_time(&value).map_err(|e| format!("{which}: {e}"))?;
                let slot = if which == "valid-after" {
                    &mut options.valid_after
                } else {
                    &mut options.valid_before
                };
                if slot.is_some() {
                    return Err(format!("{which} is given twice"));
                }
                *slot = Some(Bound { unix });
            }
            ("namespaces" | "valid-after" | "valid-before", None) => {
                return Err(format!(
                    "{name} needs a value in double quotes, e.g. {name}=\"...\""
                ));
            }
            _ if name.is_empty() => {
                return Err(format!(
                    "empty option in `{token}` (two commas in a row, or a leading comma?)"
                ));
            }
            _ => {
                return Err(format!(
                    "`{name}` is neither an option nor a key type: the options are \
                     cert-authority, namespaces=\"...\", valid-after=\"...\" and \
                     valid-before=\"...\"; the key types are {}",
                    KEY_TYPES.join(", ")
                ));
            }
        }
        if rest.is_empty() {
            break;
        }
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => return Err(format!("expected a comma after option {name} in `{token}`")),
        }
    }
    if let (Some(after), Some(before)) = (options.valid_after, options.valid_before) {
        if before.unix <= after.unix {
            return Err("valid-before must be later than valid-after".into());
        }
    }
    Ok(options)
}

/// An option value: `"..."` with `\"` for a quote, as OpenSSH's `opt_dequote` reads it.
/// Returns the value and what follows the closing quote.
fn dequote<'a>(name: &str, s: &'a str) -> Result<(String, &'a str), String> {
    let body = s.strip_prefix('"').ok_or_else(|| {
        format!("the value of {name} must be in double quotes, e.g. {name}=\"...\"")
    })?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if body[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            '"' => return Ok((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    Err(format!("the value of {name} has no closing double quote"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;
    use std::time::{Duration, UNIX_EPOCH};

    const NS: &str = "pv-test";

    fn signers(text: &str) -> AllowedSigners {
        AllowedSigners::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// 2024-06-01 00:00:00 UTC, a fixed "now" so time tests do not depend on the clock.
    fn june_2024() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_717_200_000)
    }

    fn signed(msg: &[u8]) -> (SigningKey, SshSignature) {
        let key = SigningKey::generate_ed25519();
        let sig = key.sign(NS, msg).unwrap();
        (key, sig)
    }

    #[test]
    fn round_trip_verifies_and_names_the_principal() {
        let (key, sig) = signed(b"manifest");
        let file = signers(&format!("ci@example.com {}", key.public_key_openssh()));
        assert_eq!(file.len(), 1);
        let ok = file
            .verify(NS, b"manifest", &sig, SystemTime::now())
            .unwrap();
        assert_eq!(ok.principals, vec!["ci@example.com".to_string()]);
        assert_eq!(ok.fingerprint, key.fingerprint());
        assert!(ok.vouches_as("ci@example.com"));
        assert!(!ok.vouches_as("other@example.com"));
    }

    #[test]
    fn flipped_message_byte_is_bad_signature() {
        let (key, sig) = signed(b"manifest");
        let file = signers(&format!("ci@example.com {}", key.public_key_openssh()));
        let err = file.verify(NS, b"manifesT", &sig, june_2024()).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn other_namespace_is_wrong_namespace() {
        let (key, sig) = signed(b"manifest");
        let file = signers(&format!("ci@example.com {}", key.public_key_openssh()));
        let err = file
            .verify("git", b"manifest", &sig, june_2024())
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::WrongNamespace {
                expected: "git".into(),
                found: NS.into()
            }
        );
    }

    #[test]
    fn unlisted_key_is_not_allowed() {
        let (_, sig) = signed(b"manifest");
        let other = SigningKey::generate_ed25519();
        let file = signers(&format!("ci@example.com {}", other.public_key_openssh()));
        let err = file.verify(NS, b"manifest", &sig, june_2024()).unwrap_err();
        assert_eq!(
            err,
            VerifyError::KeyNotAllowed {
                fingerprint: sig.fingerprint()
            }
        );
    }

    #[test]
    fn namespaces_option_refuses_other_namespaces() {
        let (key, sig) = signed(b"manifest");
        let pk = key.public_key_openssh();
        let file = signers(&format!("ci@example.com namespaces=\"other\" {pk}"));
        let err = file.verify(NS, b"manifest", &sig, june_2024()).unwrap_err();
        assert_eq!(
            err,
            VerifyError::NamespaceNotAllowed {
                fingerprint: key.fingerprint(),
                namespace: NS.into()
            }
        );
        let file = signers(&format!("ci@example.com namespaces=\"git,pv-*\" {pk}"));
        assert!(file.verify(NS, b"manifest", &sig, june_2024()).is_ok());
    }

    #[test]
    fn valid_before_in_the_past_is_expired() {
        let (key, sig) = signed(b"manifest");
        let pk = key.public_key_openssh();
        let file = signers(&format!("ci@example.com valid-before=\"20240531Z\" {pk}"));
        let err = file.verify(NS, b"manifest", &sig, june_2024()).unwrap_err();
        assert!(
            matches!(&err, VerifyError::Expired { line: 1, valid_before, .. }
                if valid_before == "2024-05-31 00:00:00 UTC"),
            "{err}"
        );
        // Inclusive end, as OpenSSH: valid exactly at valid-before.
        let file = signers(&format!("ci@example.com valid-before=\"20240601\" {pk}"));
        assert!(file.verify(NS, b"manifest", &sig, june_2024()).is_ok());
    }

    #[test]
    fn valid_after_in_the_future_is_not_yet_valid() {
        let (key, sig) = signed(b"manifest");
        let pk = key.public_key_openssh();
        let text = format!("# keys\n\nci@example.com valid-after=\"202406020000\" {pk}");
        let err = signers(&text)
            .verify(NS, b"manifest", &sig, june_2024())
            .unwrap_err();
        assert!(
            matches!(&err, VerifyError::NotYetValid { line: 3, .. }),
            "{err}"
        );
        let file = signers(&format!(
            "ci@example.com valid-after=\"20240101\",valid-before=\"20250101Z\" {pk}"
        ));
        assert!(file.verify(NS, b"manifest", &sig, june_2024()).is_ok());
    }

    #[test]
    fn every_accepting_line_is_returned_and_refusing_ones_are_not() {
        let (key, sig) = signed(b"manifest");
        let pk = key.public_key_openssh();
        let text = format!(
            "ci@example.com {pk}\n\
             \"a@x,b@x\" namespaces=\"pv-*\" {pk} a comment\n\
             expired@x valid-before=\"20200101\" {pk}\n\
             git@x namespaces=\"git\" {pk}\n\
             ca@x cert-authority {pk}\n"
        );
        let ok = signers(&text)
            .verify(NS, b"manifest", &sig, june_2024())
            .unwrap();
        assert_eq!(ok.principals, vec!["ci@example.com", "a@x,b@x"]);
        assert!(ok.vouches_as("b@x"));
        assert!(!ok.vouches_as("expired@x"));
        assert!(!ok.vouches_as("git@x"));
        assert!(!ok.vouches_as("ca@x"));
    }

    #[test]
    fn time_refusal_is_reported_before_namespace_refusal() {
        let (key, sig) = signed(b"manifest");
        let pk = key.public_key_openssh();
        let text = format!("a@x namespaces=\"git\" {pk}\nb@x valid-before=\"20200101\" {pk}\n");
        let err = signers(&text)
            .verify(NS, b"manifest", &sig, june_2024())
            .unwrap_err();
        assert!(matches!(err, VerifyError::Expired { line: 2, .. }), "{err}");
    }

    #[test]
    fn cert_authority_lines_never_match_plain_keys() {
        let (key, sig) = signed(b"manifest");
        let file = signers(&format!(
            "*@example.com cert-authority {}",
            key.public_key_openssh()
        ));
        assert_eq!(file.len(), 1);
        let err = file.verify(NS, b"manifest", &sig, june_2024()).unwrap_err();
        assert!(matches!(err, VerifyError::KeyNotAllowed { .. }), "{err}");
    }

    #[test]
    fn vouches_as_uses_openssh_pattern_lists() {
        let v = |list: &str| Verified {
            principals: vec![list.to_string()],
            fingerprint: String::new(),
        };
        let any = v("*@example.com");
        assert!(any.vouches_as("ci@example.com"));
        assert!(any.vouches_as("evil@example.com"));
        assert!(!any.vouches_as("ci@example.org"));
        let except = v("ci@example.com,!evil@example.com");
        assert!(except.vouches_as("ci@example.com"));
        assert!(!except.vouches_as("evil@example.com"));
        let wild_except = v("*@example.com,!evil@example.com");
        assert!(wild_except.vouches_as("ci@example.com"));
        assert!(!wild_except.vouches_as("evil@example.com"));
        let one = v("?i@x");
        assert!(one.vouches_as("ci@x"));
        assert!(one.vouches_as("pi@x"));
        assert!(!one.vouches_as("cci@x"));
        assert!(!one.vouches_as("i@x"));
        assert!(!v("").vouches_as("ci@x"));
    }

    #[test]
    fn comments_blank_lines_and_quoted_values_parse() {
        let pk = SigningKey::generate_ed25519().public_key_openssh();
        let text = format!(
            "  # indented comment\n\t\n\
             \"ci@example.com, ops@example.com\" {pk} comment with spaces\n\
             x@y CERT-AUTHORITY,namespaces=\"a b,\\\"q\\\"\" {pk}\r\n"
        );
        let file = signers(&text);
        assert_eq!(file.len(), 2);
        assert_eq!(
            file.entries[0].principals,
            "ci@example.com, ops@example.com"
        );
        assert_eq!(file.entries[0].line, 3);
        assert!(file.entries[1].cert_authority);
        assert_eq!(file.entries[1].namespaces.as_deref(), Some("a b,\"q\""));
        assert!(AllowedSigners::parse("").unwrap().is_empty());
    }

    /// Each kind of bad line, on line 3 after a good line and a comment, must say line 3.
    #[test]
    fn parser_errors_name_the_line() {
        let pk = SigningKey::generate_ed25519().public_key_openssh();
        let (_, b64) = pk.split_once(' ').unwrap();
        let cases: Vec<(String, &str)> = vec![
            (
                format!("ci@x bogus-option {pk}"),
                "neither an option nor a key type",
            ),
            (
                format!("ci@x ssh-ed2559 {b64}"),
                "neither an option nor a key type",
            ),
            (
                format!("ci@x namespaces=\"a\" ssh-ed2559 {b64}"),
                "unknown key type",
            ),
            (
                "ci@x ssh-ed25519 AAAA!!notbase64".to_string(),
                "is not valid",
            ),
            (
                "ci@x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5".to_string(),
                "is not valid",
            ),
            (format!("ci@x ssh-rsa {b64}"), "is not valid"),
            ("ci@x ssh-ed25519".to_string(), "base64 key is missing"),
            ("ci@x".to_string(), "key is missing"),
            ("ci@x namespaces=\"a\"".to_string(), "key is missing"),
            (
                format!("ci@x namespaces=pv {pk}"),
                "must be in double quotes",
            ),
            (format!("ci@x namespaces {pk}"), "needs a value"),
            (format!("ci@x namespaces=\"\" {pk}"), "allows no namespace"),
            (
                format!("ci@x namespaces=\"a\",namespaces=\"b\" {pk}"),
                "given twice",
            ),
            (format!("ci@x namespaces=\"a {pk}"), "never closed"),
            (format!("ci@x valid-after=\"2024\" {pk}"), "valid-after"),
            (format!("ci@x valid-before=\"20241301\" {pk}"), "month 13"),
            (
                format!("ci@x valid-after=\"20250101\",valid-before=\"20240101\" {pk}"),
                "later than valid-after",
            ),
            (
                format!("ci@x cert-authority,,namespaces=\"a\" {pk}"),
                "empty option",
            ),
            (
                format!("ci@x cert-authority=\"yes\" {pk}"),
                "takes no value",
            ),
            (format!("ci@x namespaces=\"a\"x {pk}"), "expected a comma"),
            (format!("\"ci@x {pk}"), "never closed"),
            (format!("\"\" {pk}"), "principals are empty"),
            (
                format!("ci@x ssh-ed25519-cert-v01@openssh.com {b64}"),
                "certificate",
            ),
            (
                format!("ci@x namespaces=\"a\" ssh-ed25519-cert-v01@openssh.com {b64}"),
                "certificate",
            ),
        ];
        for (bad, expected) in cases {
            let text = format!("ok@x {pk}\n# comment\n{bad}\nok2@x {pk}\n");
            let err = AllowedSigners::parse(&text).expect_err(&bad);
            assert_eq!(err.line, 3, "{bad}: {err}");
            assert!(err.message.contains(expected), "{bad}: {err}");
            assert!(err.to_string().starts_with("allowed_signers:3: "), "{err}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed_signers");
        std::fs::write(&path, "ci@x ssh-ed25519 AAAA\n").unwrap();
        let err = AllowedSigners::load(&path).unwrap_err();
        assert_eq!(err.path.as_deref(), Some(path.as_path()));
        assert_eq!(err.line, 1);
        assert!(
            err.to_string()
                .starts_with(&format!("{}:1: ", path.display())),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let err = AllowedSigners::load(&missing).unwrap_err();
        assert_eq!(err.line, 0);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read", missing.display())),
            "{err}"
        );
    }
}
