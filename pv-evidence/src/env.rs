//! Facts about the machine and the checkout, gathered once per process (tests of one binary run
//! in parallel threads and share them).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pv_project::{Probe, Project};

use crate::record::{GitInfo, Gpu, Hardware};

/// The hardware this process runs on (cached).
pub fn hardware() -> Hardware {
    static HW: OnceLock<Hardware> = OnceLock::new();
    HW.get_or_init(|| Hardware {
        cpu_model: cpu_model(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        gpus: nvidia_gpus(),
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    })
    .clone()
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_string())
}

/// Parses `nvidia-smi --query-gpu=name,driver_version --format=csv,noheader` output.
pub fn parse_nvidia_smi(out: &str) -> Vec<Gpu> {
    out.lines()
        .filter_map(|l| {
            let (name, driver) = l.rsplit_once(',')?;
            let (name, driver) = (name.trim(), driver.trim());
            (!name.is_empty()).then(|| Gpu {
                name: name.to_string(),
                driver: driver.to_string(),
            })
        })
        .collect()
}

fn nvidia_gpus() -> Vec<Gpu> {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// The commit and dirty flag of the checkout at `dir` (cached per process).
///
/// `PV_GIT_COMMIT` (with `PV_GIT_DIRTY=1` when the build tree had changes) overrides what git
/// says: a test binary carried to another machine (scripts/device-run.sh) runs in a copy of the
/// tree whose git state is not the one it was built from, so the build records its commit
/// beside the binary and the run passes it on.
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    static GIT: OnceLock<Option<GitInfo>> = OnceLock::new();
    GIT.get_or_init(|| {
        if let Some(commit) = std::env::var("PV_GIT_COMMIT")
            .ok()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
        {
            return Some(GitInfo {
                commit,
                dirty: std::env::var("PV_GIT_DIRTY").is_ok_and(|v| v.trim() == "1"),
            });
        }
        let run = |args: &[&str]| -> Option<String> {
            let o = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let commit = run(&["rev-parse", "HEAD"])?.trim().to_string();
        let status = run(&["status", "--porcelain", "--untracked-files=normal"])?;
        Some(GitInfo {
            commit,
            dirty: !status.trim().is_empty(),
        })
    })
    .clone()
}

/// The project of a test crate: `pv.toml` found upward from its manifest folder (else the
/// defaults at its cargo root), loaded once per folder per process.
pub fn project(manifest_dir: &Path) -> Result<Arc<Project>, String> {
    type Loaded = Vec<(PathBuf, Result<Arc<Project>, String>)>;
    static PROJECTS: Mutex<Loaded> = Mutex::new(Vec::new());
    let mut list = PROJECTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = list.iter().find(|(d, _)| d == manifest_dir) {
        return p.clone();
    }
    let p = Project::discover(manifest_dir)
        .map(Arc::new)
        .map_err(|e| e.to_string());
    list.push((manifest_dir.to_path_buf(), p.clone()));
    p
}

/// Whether a fixture or device is present, by its `pv.toml` probe: `Ok(value)` (the value of
/// its `env` variable, or empty) or `Err(why)`, the declared `missing` text with the detail.
/// Each (kind, name) is probed once per process.
pub fn probe(kind: &str, name: &str, p: &Probe) -> Result<String, String> {
    type Seen = Vec<((String, String), Result<String, String>)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    let key = (kind.to_string(), name.to_string());
    if let Some((_, r)) = SEEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
    {
        return r.clone();
    }
    let r = run_probe(kind, name, p);
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key, r.clone()));
    r
}

/// [`probe`] without the cache.
pub fn run_probe(kind: &str, name: &str, p: &Probe) -> Result<String, String> {
    let what = format!("{kind} `{name}`");
    let value = match &p.env {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => return Err(format!("{what}: {} (${var} is not set)", p.missing)),
        },
        None => String::new(),
    };
    let Some((prog, args)) = p.probe.split_first() else {
        return Ok(value);
    };
    let subst = |a: &String| a.replace("{env}", &value);
    let argv: Vec<String> = std::iter::once(prog).chain(args).map(subst).collect();
    let shown = argv.join(" ");
    let mut child = match Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("{what}: {} (cannot run `{shown}`: {e})", p.missing)),
    };
    // Read stderr on a thread so that a chatty probe cannot block on a full pipe.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + Duration::from_secs_f64(p.timeout_s);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(format!(
                    "{what}: {} (waiting for `{shown}`: {e})",
                    p.missing
                ))
            }
        }
    };
    let err = reader.join().unwrap_or_default();
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match status {
        None => Err(format!(
            "{what}: {} (probe `{shown}` did not finish within {} s)",
            p.missing, p.timeout_s
        )),
        Some(st) if st.success() => Ok(value),
        Some(st) => Err(format!(
            "{what}: {} (probe `{shown}` exited with {st}{}{last})",
            p.missing,
            if last.is_empty() { "" } else { ": " }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines() {
        let gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 550.54.15\nNVIDIA H200, 560.1\n\n");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].driver, "550.54.15");
        assert_eq!(gpus[1].name, "NVIDIA H200");
        assert!(parse_nvidia_smi("").is_empty());
    }

    fn probe_of(env: Option<&str>, argv: &[&str], timeout_s: f64) -> Probe {
        Probe {
            env: env.map(str::to_string),
            probe: argv.iter().map(|s| s.to_string()).collect(),
            missing: "install it".to_string(),
            timeout_s,
        }
    }

    #[test]
    fn probes_pass_fail_and_time_out() {
        assert_eq!(
            run_probe("device", "sh", &probe_of(None, &["true"], 5.0)),
            Ok(String::new())
        );
        let e = run_probe(
            "fixture",
            "f",
            &probe_of(None, &["sh", "-c", "echo nope >&2; exit 3"], 5.0),
        )
        .unwrap_err();
        assert!(
            e.contains("fixture `f`: install it") && e.contains("nope"),
            "{e}"
        );
        let e = run_probe(
            "fixture",
            "f",
            &probe_of(None, &["no-such-program-pv"], 5.0),
        )
        .unwrap_err();
        assert!(e.contains("cannot run `no-such-program-pv`"), "{e}");
        let t = Instant::now();
        let e = run_probe("fixture", "slow", &probe_of(None, &["sleep", "30"], 0.3)).unwrap_err();
        assert!(e.contains("did not finish within 0.3 s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn probes_export_their_variable() {
        // PATH is always set: its value is substituted for {env} and exported.
        let path = std::env::var("PATH").unwrap();
        let p = probe_of(Some("PATH"), &["sh", "-c", "test -n \"$0\"", "{env}"], 5.0);
        assert_eq!(run_probe("fixture", "p", &p), Ok(path));
        let p = probe_of(Some("PV_SURELY_UNSET_VARIABLE"), &[], 5.0);
        let e = run_probe("fixture", "p", &p).unwrap_err();
        assert!(e.contains("$PV_SURELY_UNSET_VARIABLE is not set"), "{e}");
    }

    #[test]
    fn finds_this_project() {
        let p = project(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(p.root.join("pv-evidence").is_dir(), "{}", p.root.display());
    }
}
