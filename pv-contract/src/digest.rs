//! Content hashes used to tie evidence to the exact contract text it was produced against.

use sha2::{Digest, Sha256};

/// SHA-256 of `bytes` as 64 lowercase hex characters.
pub fn content_hash(bytes: impl AsRef<[u8]>) -> String {
    let digest = Sha256::digest(bytes.as_ref());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The name of the claim digest's rules, part of what is hashed.
pub const CLAIM_DIGEST: &str = "pv-claim-v1";

/// The compatibility part of a contract version, as Cargo reads semver: the major version, or
/// `0.MINOR` while the major is 0 (`1.4.2` -> `1`, `0.4.1` -> `0.4`). An unparsable version is
/// taken whole.
pub fn compat_version(version: &str) -> String {
    match semver::Version::parse(version) {
        Ok(v) if v.major > 0 => v.major.to_string(),
        Ok(v) => format!("0.{}", v.minor),
        Err(_) => version.to_string(),
    }
}

/// What a falsifier's verdict depends on in its contract, hashed (`pv-claim-v1`): the
/// contract id, the compatibility part of its version ([`compat_version`]), and the
/// falsifier's id, claim, tier, gate and metrics (names, operators, thresholds, units). Not
/// included: `if_fails`, `findings`, `retired`, other falsifiers, stages, criteria, equations,
/// divergences, amendments, and the patch/minor part of the version. So an amendment that
/// rewords another claim stales nothing, and a breaking version bump stales everything.
pub fn claim_digest(contract: &crate::Contract, falsifier: &crate::Falsifier) -> String {
    #[derive(serde::Serialize)]
    struct Claim<'a> {
        contract: &'a str,
        compat: String,
        id: &'a str,
        claim: &'a str,
        tier: crate::Tier,
        gate: &'a crate::Gate,
        metrics: &'a [crate::Metric],
    }
    let claim = Claim {
        contract: &contract.contract,
        compat: compat_version(&contract.version),
        id: &falsifier.id,
        claim: &falsifier.claim,
        tier: falsifier.tier,
        gate: &falsifier.gate,
        metrics: &falsifier.metrics,
    };
    // Serializing plain structs of strings and numbers cannot fail.
    let json = serde_json::to_string(&claim).unwrap_or_default();
    content_hash(format!("{CLAIM_DIGEST}\0{json}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = r#"
contract: demo-v1
version: 0.2.1
title: t
summary: s
amendment_history:
  - {version: 0.1.0, date: 2026-12-07, summary: first, changes: [first]}
falsifiers:
  - id: FALSIFY-DEMO-A-001
    claim: a holds
    tier: algorithm
    metrics:
      - {name: err, op: "<=", threshold: 0.001}
    if_fails: look at a
  - id: FALSIFY-DEMO-B-001
    claim: b holds
    tier: algorithm
    metrics:
      - {name: err, op: "<=", threshold: 0.001}
    if_fails: look at b
"#;

    fn digests(text: &str) -> (String, String) {
        let l = crate::load_str("demo.yaml", text).unwrap();
        let c = &l.contract;
        (
            claim_digest(c, &c.falsifiers[0]),
            claim_digest(c, &c.falsifiers[1]),
        )
    }

    #[test]
    fn compat_versions() {
        assert_eq!(compat_version("1.4.2"), "1");
        assert_eq!(compat_version("0.4.1"), "0.4");
        assert_eq!(compat_version("0.0.3"), "0.0");
        assert_eq!(compat_version("x"), "x");
    }

    #[test]
    fn claim_digest_follows_only_what_the_verdict_depends_on() {
        let (a, b) = digests(C);
        assert_ne!(a, b);
        // Rewording the other claim, its if_fails, a patch bump: a is unchanged.
        let reworded = C
            .replace("claim: b holds", "claim: b holds, always")
            .replace("look at a", "look at a first")
            .replace("0.2.1", "0.2.2");
        let (a2, b2) = digests(&reworded);
        assert_eq!(a, a2);
        assert_ne!(b, b2);
        // Its threshold, its claim, a breaking (0.x minor) bump: a changes.
        for edited in [
            C.replacen("threshold: 0.001", "threshold: 0.01", 1),
            C.replace("claim: a holds", "claim: a holds exactly"),
            C.replace("0.2.1", "0.3.0"),
            C.replacen("tier: algorithm", "tier: hardware", 1),
        ] {
            assert_ne!(a, digests(&edited).0, "{edited}");
        }
    }

    #[test]
    fn matches_known_vectors() {
        assert_eq!(
            super::content_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            super::content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
