//! Facts about the machine and the checkout, gathered once per process (tests of one binary run
//! in parallel threads and share them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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

/// Whether a device named in a contract's `gate.devices` is present. Unknown names are `None`.
pub fn device_present(name: &str) -> Option<bool> {
    match name {
        // The CUDA forward needs a driver that can see a GPU; nvidia-smi is the driver's tool.
        "cuda" => Some(!hardware().gpus.is_empty()),
        _ => None,
    }
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

/// The workspace root above `start`: the nearest ancestor whose `Cargo.toml` has a
/// `[workspace]` table, else `start` itself.
pub fn workspace_root(start: &Path) -> PathBuf {
    for dir in start.ancestors() {
        if let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) {
            if text.lines().any(|l| l.trim() == "[workspace]") {
                return dir.to_path_buf();
            }
        }
    }
    start.to_path_buf()
}

/// Outcome of probing the `python-oracle` fixture.
#[derive(Debug, Clone)]
pub enum PythonProbe {
    /// The interpreter imports `gguf`, `llama_cpp` and `numpy`.
    Ready(PathBuf),
    /// Why it is not usable (reported as the skip reason).
    Absent(String),
}

/// Probes `$PV_ORACLE_PYTHON` once per process.
pub fn python_oracle() -> PythonProbe {
    static PY: OnceLock<PythonProbe> = OnceLock::new();
    PY.get_or_init(|| {
        let Some(py) = std::env::var_os("PV_ORACLE_PYTHON") else {
            return PythonProbe::Absent(
                "fixture python-oracle: $PV_ORACLE_PYTHON is not set (scripts/test.sh sets it)"
                    .to_string(),
            );
        };
        let py = PathBuf::from(py);
        match Command::new(&py)
            .args(["-c", "import gguf, llama_cpp, numpy"])
            .output()
        {
            Ok(o) if o.status.success() => PythonProbe::Ready(py),
            Ok(o) => PythonProbe::Absent(format!(
                "fixture python-oracle: {} cannot import gguf, llama_cpp, numpy: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => PythonProbe::Absent(format!(
                "fixture python-oracle: cannot run {}: {e}",
                py.display()
            )),
        }
    })
    .clone()
}

/// Whether a fixture named in a contract's `gate.fixtures` is present: `Ok(())`, `Err(reason)`
/// when absent, or `None` for a fixture name this runtime does not know.
pub fn fixture_present(name: &str) -> Option<Result<(), String>> {
    match name {
        "python-oracle" => Some(match python_oracle() {
            PythonProbe::Ready(_) => Ok(()),
            PythonProbe::Absent(why) => Err(why),
        }),
        _ => None,
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

    #[test]
    fn finds_this_workspace() {
        let root = workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(root.join("pv-evidence").is_dir(), "{}", root.display());
    }

    #[test]
    fn unknown_gates_are_unknown() {
        assert!(device_present("tpu").is_none());
        assert!(fixture_present("no-such-fixture").is_none());
    }
}
