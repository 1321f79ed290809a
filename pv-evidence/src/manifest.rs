//! Run manifests: which records one test run wrote, with their digests.
//!
//! A record on its own proves nothing: anybody can write one. What `pv` counts is a record that
//! a **run** wrote, and a run says so in its manifest: an [in-toto Statement v1] whose subjects
//! are the record files (name and sha256) and whose predicate is the [test-result predicate]
//! (`result`, `configuration`, `passedTests`, `warnedTests`, `failedTests`) plus pv's own
//! `pv` field (run id, start and end, commit and dirty flag, host, hardware, toolchain, the
//! command, and a summary of each record). The Statement travels in a [DSSE] envelope, so a
//! run can later be signed (`pv evidence sign`) without changing a byte of what it says.
//!
//! The runtime keeps one manifest per test process and evidence folder, rewritten atomically
//! after each record, so a run killed half-way still lists what it wrote. Manifests live beside
//! their records, named `<start>_run_<id>.intoto.json`; subject names are paths relative to the
//! manifest's folder, so moving a run's files together keeps it whole.
//!
//! [in-toto Statement v1]: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
//! [test-result predicate]: https://github.com/in-toto/attestation/blob/main/spec/predicates/test-results.md
//! [DSSE]: https://github.com/secure-systems-lab/dsse/blob/master/envelope.md

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{EvidenceRecord, GitInfo, Hardware, JsonF64, Outcome, Tier};
use crate::timefmt::{compact_utc, format_rfc3339_utc};

/// DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The in-toto test-result predicate.
pub const PREDICATE_TYPE: &str = "https://in-toto.io/attestation/test-result/v0.1";
/// File name ending of a manifest (record listings skip these files).
pub const MANIFEST_SUFFIX: &str = ".intoto.json";
/// The `pv` predicate field's format.
pub const RUN_FORMAT: u32 = 1;
/// Environment variable naming the command a run belongs to (`pv verify` sets it; otherwise
/// the test binary's own command line is recorded).
pub const RUN_COMMAND_ENV: &str = "PV_RUN_COMMAND";
/// Environment variable naming the invocation a run belongs to (`pv verify` sets it, so it
/// can find and sign the manifests of its own test processes).
pub const INVOCATION_ENV: &str = "PV_INVOCATION";
/// SSHSIG namespace of manifest signatures: a signature made for another purpose (a git
/// commit, a file) never verifies as a run signature.
pub const SIGNATURE_NAMESPACE: &str = "pv-run-manifest";

/// A DSSE envelope (the JSON envelope of the DSSE spec). Unknown fields are ignored, as the
/// spec requires of consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Base64 of the serialized Statement.
    pub payload: String,
    /// [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures over the DSSE pre-authentication encoding of type and payload.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature: here, base64 of an SSHSIG blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint only (the signer's key fingerprint); never used to decide trust.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 of the signature.
    pub sig: String,
}

/// An in-toto Statement v1 with the test-result predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The record files, by name relative to the manifest's folder, with their sha256.
    pub subject: Vec<ResourceDescriptor>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What the run found.
    pub predicate: TestResult,
}

/// An in-toto ResourceDescriptor (the fields pv uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    /// Name (for a record: its path relative to the manifest's folder).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Algorithm -> lowercase hex digest (`sha256`, `gitCommit`).
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

/// The test-result predicate, with pv's run facts in `pv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// `pass` when no record failed or errored, else `fail`.
    pub result: String,
    /// The configuration the run used: the project file and the commit.
    pub configuration: Vec<ResourceDescriptor>,
    /// Falsifier ids that passed.
    #[serde(rename = "passedTests", default)]
    pub passed_tests: Vec<String>,
    /// Falsifier ids that were skipped (never a pass).
    #[serde(rename = "warnedTests", default)]
    pub warned_tests: Vec<String>,
    /// Falsifier ids that failed or errored.
    #[serde(rename = "failedTests", default)]
    pub failed_tests: Vec<String>,
    /// pv's run facts (absent in a Statement pv did not write; such a file is no run manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv: Option<RunInfo>,
}

/// What pv records about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// [`RUN_FORMAT`].
    pub format: u32,
    /// Unique id of the run (`<start>-<pid>-<random>`).
    pub run_id: String,
    /// The invocation (`pv verify`) this run belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
    /// When the run wrote its first record (RFC 3339, UTC).
    pub started: String,
    /// When it wrote its last one.
    pub finished: String,
    /// The checkout, when git was available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    /// Host name.
    pub host: String,
    /// The machine.
    pub hardware: Hardware,
    /// `rustc -V` of the compiler that built the runtime.
    pub rustc: String,
    /// The command that ran the tests (empty when not known: an adopted run).
    pub command: Vec<String>,
    /// Set when the manifest was written after the run, from its records as found then
    /// (`pv evidence adopt`): what adopted it and when. Such a manifest vouches only that the
    /// records have not changed since; nothing in it was seen by the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<String>,
    /// One summary per record, in the order they were written.
    pub records: Vec<RecordSummary>,
}

/// A record as its run summarizes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSummary {
    /// File name, as in the subject list.
    pub file: String,
    /// Falsifier id.
    pub falsifier: String,
    /// Tier.
    pub tier: Tier,
    /// Outcome as the runtime computed it.
    pub outcome: Outcome,
    /// The bound test.
    pub test: String,
    /// Metric name -> measured value.
    pub metrics: BTreeMap<String, Option<JsonF64>>,
}

/// A manifest read back: the envelope, the Statement, and the exact payload bytes (what a
/// signature covers).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The envelope as found.
    pub envelope: Envelope,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The parsed Statement, its `pv` part moved to [`Manifest::run`].
    pub statement: Statement,
    /// pv's run facts.
    pub run: RunInfo,
}

impl Manifest {
    /// `(name, sha256)` of every subject.
    pub fn subjects(&self) -> impl Iterator<Item = (&str, &str)> {
        self.statement.subject.iter().map(|s| {
            (
                s.name.as_str(),
                s.digest.get("sha256").map(String::as_str).unwrap_or(""),
            )
        })
    }

    /// The bytes a signature covers: DSSE's pre-authentication encoding of type and payload.
    pub fn signed_bytes(&self) -> Vec<u8> {
        pae(&self.envelope.payload_type, &self.payload)
    }
}

/// DSSE pre-authentication encoding: `DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Why a file is not a usable manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: not a valid run manifest: {message}")]
pub struct ManifestError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// Base64 in any of the four spellings DSSE allows (standard or URL-safe, padded or not).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(s)
        .or_else(|_| Base64Unpadded::decode_vec(s))
        .or_else(|_| Base64Url::decode_vec(s))
        .or_else(|_| Base64UrlUnpadded::decode_vec(s))
        .ok()
}

/// Whether `name` is a safe subject name: a relative path below the manifest's folder to a
/// `.json` file that is not itself a manifest.
pub fn safe_subject_name(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty()
        && name.ends_with(".json")
        && !name.ends_with(MANIFEST_SUFFIX)
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a manifest from bytes (`path` names it in errors). Checks the envelope's payload
/// type, the Statement and predicate types, that every subject is a safe name with a sha256
/// digest and is named once, and that the summaries list exactly the subjects.
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let bad = |message: String| ManifestError {
        path: path.to_path_buf(),
        message,
    };
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a DSSE envelope: {e}")))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(bad(format!(
            "payloadType is {:?}, expected {PAYLOAD_TYPE:?}",
            envelope.payload_type
        )));
    }
    let payload =
        decode_base64(&envelope.payload).ok_or_else(|| bad("payload is not base64".into()))?;
    let mut statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| bad(format!("payload is not an in-toto Statement: {e}")))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(bad(format!(
            "_type is {:?}, expected {STATEMENT_TYPE:?}",
            statement.statement_type
        )));
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(bad(format!(
            "predicateType is {:?}, expected {PREDICATE_TYPE:?}",
            statement.predicate_type
        )));
    }
    let Some(run) = statement.predicate.pv.take() else {
        return Err(bad("the predicate has no `pv` run facts".into()));
    };
    if run.format > RUN_FORMAT {
        return Err(bad(format!(
            "run format {} is newer than this reader ({RUN_FORMAT})",
            run.format
        )));
    }
    for t in [&run.started, &run.finished] {
        if crate::timefmt::parse_rfc3339(t).is_none() {
            return Err(bad(format!("time {t:?} is not RFC 3339")));
        }
    }
    let mut names = HashMap::new();
    for s in &statement.subject {
        if !safe_subject_name(&s.name) {
            return Err(bad(format!(
                "subject {:?} is not a record file below the manifest's folder",
                s.name
            )));
        }
        let sha = s.digest.get("sha256").map(String::as_str).unwrap_or("");
        if !is_sha256_hex(sha) {
            return Err(bad(format!("subject {:?} has no sha256 digest", s.name)));
        }
        if names.insert(s.name.as_str(), ()).is_some() {
            return Err(bad(format!("subject {:?} is listed twice", s.name)));
        }
    }
    let summarized: Vec<&str> = run.records.iter().map(|r| r.file.as_str()).collect();
    let subjects: Vec<&str> = statement.subject.iter().map(|s| s.name.as_str()).collect();
    if summarized != subjects {
        return Err(bad(
            "the record summaries do not list exactly the subjects, in order".into(),
        ));
    }
    Ok(Manifest {
        envelope,
        payload,
        statement,
        run,
    })
}

/// Reads and parses one manifest.
pub fn read_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let bytes = fs::read(path).map_err(|e| ManifestError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_manifest(path, &bytes)
}

/// The envelope for `statement`, with `signatures`.
pub fn envelope_for(statement: &Statement, signatures: Vec<EnvelopeSignature>) -> Envelope {
    // Serializing plain structs of strings, numbers and maps cannot fail.
    let payload = serde_json::to_vec(statement).unwrap_or_default();
    Envelope {
        payload: Base64::encode_string(&payload),
        payload_type: PAYLOAD_TYPE.to_string(),
        signatures,
    }
}

/// Writes `envelope` to `path` atomically (hidden temporary file, flush, rename).
pub fn write_envelope(path: &Path, envelope: &Envelope) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(envelope).map_err(io::Error::other)?;
    json.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// sha256 (lowercase hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What a run knows about itself before its first record.
#[derive(Debug, Clone)]
pub struct RunStart {
    /// Run id.
    pub run_id: String,
    /// Invocation, if any.
    pub invocation: Option<String>,
    /// Start time.
    pub started: SystemTime,
    /// The command.
    pub command: Vec<String>,
    /// Host name.
    pub host: String,
    /// The project file's relative name and sha256, if there is one.
    pub project_file: Option<(String, String)>,
    /// Set for a manifest written after the run ([`RunInfo::adopted`]).
    pub adopted: Option<String>,
}

/// A run in progress: its records so far, and where its manifest goes.
#[derive(Debug, Clone)]
pub struct RunLog {
    start: RunStart,
    path: PathBuf,
    subjects: Vec<ResourceDescriptor>,
    records: Vec<RecordSummary>,
    git: Option<GitInfo>,
    hardware: Option<Hardware>,
    rustc: String,
}

impl RunLog {
    /// A run whose manifest will be written in `dir`.
    pub fn new(dir: &Path, start: RunStart) -> RunLog {
        let path = dir.join(format!(
            "{}_run_{}{MANIFEST_SUFFIX}",
            compact_utc(start.started),
            start.run_id
        ));
        RunLog {
            start,
            path,
            subjects: Vec::new(),
            records: Vec::new(),
            git: None,
            hardware: None,
            rustc: String::new(),
        }
    }

    /// Where the manifest is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a record written as `file` (relative to the manifest's folder) whose bytes have
    /// `sha256`.
    pub fn add(&mut self, file: &str, sha256: &str, record: &EvidenceRecord) {
        self.subjects.push(ResourceDescriptor {
            name: file.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), sha256.to_string())]),
        });
        self.records.push(RecordSummary {
            file: file.to_string(),
            falsifier: record.falsifier.clone(),
            tier: record.tier,
            outcome: record.outcome,
            test: record.test.name.clone(),
            metrics: record
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.value))
                .collect(),
        });
        if self.git.is_none() {
            self.git = record.git.clone();
        }
        if self.hardware.is_none() {
            self.hardware = Some(record.hardware.clone());
        }
        if self.rustc.is_empty() {
            self.rustc = record.rustc.clone();
        }
    }

    /// The Statement as of now (`finished` = `now`).
    pub fn statement(&self, now: SystemTime) -> Statement {
        let mut passed = Vec::new();
        let mut warned = Vec::new();
        let mut failed = Vec::new();
        for r in &self.records {
            match r.outcome {
                Outcome::Pass => passed.push(r.falsifier.clone()),
                Outcome::Skipped => warned.push(r.falsifier.clone()),
                Outcome::Fail | Outcome::Error => failed.push(r.falsifier.clone()),
            }
        }
        let mut configuration = Vec::new();
        if let Some((name, sha)) = &self.start.project_file {
            configuration.push(ResourceDescriptor {
                name: name.clone(),
                digest: BTreeMap::from([("sha256".to_string(), sha.clone())]),
            });
        }
        if let Some(g) = &self.git {
            configuration.push(ResourceDescriptor {
                name: "git".to_string(),
                digest: BTreeMap::from([("gitCommit".to_string(), g.commit.clone())]),
            });
        }
        Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            subject: self.subjects.clone(),
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate: TestResult {
                result: if failed.is_empty() { "pass" } else { "fail" }.to_string(),
                configuration,
                passed_tests: passed,
                warned_tests: warned,
                failed_tests: failed,
                pv: Some(RunInfo {
                    format: RUN_FORMAT,
                    run_id: self.start.run_id.clone(),
                    invocation: self.start.invocation.clone(),
                    started: format_rfc3339_utc(self.start.started),
                    finished: format_rfc3339_utc(now),
                    git: self.git.clone(),
                    host: self.start.host.clone(),
                    hardware: self.hardware.clone().unwrap_or_else(crate::env::hardware),
                    rustc: self.rustc.clone(),
                    command: self.start.command.clone(),
                    adopted: self.start.adopted.clone(),
                    records: self.records.clone(),
                }),
            },
        }
    }

    /// Writes the manifest as of now, unsigned.
    pub fn write(&self) -> io::Result<()> {
        self.write_finished(SystemTime::now())
    }

    /// Writes the manifest, unsigned, with the run finished at `finished`.
    pub fn write_finished(&self, finished: SystemTime) -> io::Result<()> {
        write_envelope(
            &self.path,
            &envelope_for(&self.statement(finished), Vec::new()),
        )
    }

    /// Whether no record was added yet.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }
}

/// The runs of this process, one per evidence folder.
static RUNS: Mutex<Vec<(PathBuf, RunLog)>> = Mutex::new(Vec::new());

/// This process's run facts (called once per folder).
fn start_here() -> RunStart {
    let started = SystemTime::now();
    let suffix = crate::store::unique_suffix();
    let command = match std::env::var(RUN_COMMAND_ENV) {
        Ok(c) if !c.trim().is_empty() => c.split_whitespace().map(str::to_string).collect(),
        _ => std::env::args().collect(),
    };
    RunStart {
        run_id: format!("{}-{suffix}", compact_utc(started)),
        invocation: std::env::var(INVOCATION_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty()),
        started,
        command,
        host: host_name(),
        project_file: None,
        adopted: None,
    }
}

/// The machine's host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`, else `unknown`).
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Adds a record this process wrote into `dir` to the process's run there and rewrites that
/// run's manifest. `project_file`: the project file's name and sha256, for the configuration.
pub fn record_written(
    dir: &Path,
    file: &str,
    sha256: &str,
    record: &EvidenceRecord,
    project_file: Option<(String, String)>,
) -> io::Result<PathBuf> {
    let mut runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    let i = match runs.iter().position(|(d, _)| d == dir) {
        Some(i) => i,
        None => {
            let mut start = start_here();
            start.project_file = project_file;
            runs.push((dir.to_path_buf(), RunLog::new(dir, start)));
            runs.len() - 1
        }
    };
    let log = &mut runs[i].1;
    log.add(file, sha256, record);
    log.write()?;
    Ok(log.path().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn pae_counts_bytes_not_chars() {
        // "é" is two bytes in UTF-8; an empty body still gets its length.
        assert_eq!(pae("é", b""), "DSSEv1 2 é 0 ".as_bytes().to_vec());
    }

    #[test]
    fn the_dsse_spec_example_envelope_parses() {
        // The envelope of the DSSE protocol's test vector (protocol.md).
        let e: Envelope = serde_json::from_str(
            r#"{"payload": "aGVsbG8gd29ybGQ=", "payloadType": "http://example.com/HelloWorld",
                "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#,
        )
        .unwrap();
        assert_eq!(decode_base64(&e.payload).unwrap(), b"hello world");
        assert_eq!(e.signatures[0].keyid, "");
        // Not an in-toto payload: pv refuses it as a run manifest, with the reason.
        let err = parse_manifest(Path::new("x"), &serde_json::to_vec(&e).unwrap()).unwrap_err();
        assert!(err.message.contains("payloadType"), "{err}");
    }

    #[test]
    fn the_test_result_spec_example_statement_parses_but_is_no_run() {
        // The example of the in-toto test-result predicate (spec/predicates/test-results.md),
        // trimmed to one test name.
        let text = r#"{"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"gitCommit": "d20ace7968ba43c0219f62d71334c1095bab1602"}}],
            "predicateType": "https://in-toto.io/attestation/test-result/v0.1",
            "predicate": {"result": "pass",
              "configuration": [{"name": ".github/workflows/ci.yml",
                "downloadLocation": "https://github.com/in-toto/in-toto/blob/d20ace7968ba43c0219f62d71334c1095bab1602/.github/workflows/ci.yml",
                "digest": {"gitBlob": "ebe4add40f63c3c98bc9b32ff1e736f04120b023"}}],
              "url": "https://github.com/in-toto/in-toto/actions/runs/4425592351",
              "passedTests": ["build (3.7, ubuntu-latest, py)"], "warnedTests": [], "failedTests": []}}"#;
        let st: Statement = serde_json::from_str(text).unwrap();
        assert_eq!(st.predicate.passed_tests.len(), 1);
        assert!(st.predicate.pv.is_none());
        let env = envelope_for(&st, Vec::new());
        let err = parse_manifest(Path::new("x"), &serde_json::to_vec(&env).unwrap()).unwrap_err();
        assert!(err.message.contains("no `pv` run facts"), "{err}");
    }

    #[test]
    fn base64_in_all_four_spellings() {
        // 0xfb 0xff encodes to "+/8=" (standard) and "-_8=" (URL-safe).
        for s in ["+/8=", "+/8", "-_8=", "-_8"] {
            assert_eq!(decode_base64(s), Some(vec![0xfb, 0xff]), "{s}");
        }
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn subject_names_stay_below_the_manifest() {
        assert!(safe_subject_name("a.json"));
        assert!(safe_subject_name("sub/a.json"));
        for bad in [
            "",
            "../a.json",
            "/etc/a.json",
            "sub/../../a.json",
            "./a.json",
            "a.txt",
            "x.intoto.json",
        ] {
            assert!(!safe_subject_name(bad), "{bad}");
        }
    }
}
