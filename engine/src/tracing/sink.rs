//! The trace directory: one `.npy` file per captured tensor plus `manifest.json`.
//!
//! File names sort in a readable way and say what they hold:
//! `L012.moe_router.logits.p005.npy` (layer 12, stage `moe_router`, part `logits`, position 5),
//! `L003.moe_expert_gate.e017.p000.npy` (expert 17), `embed.p000.npy`, `logits.p005.npy`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::npy::{NpyArray, NpyData, NpyError};
use super::plan::TracePlan;
use super::stage::Stage;

/// The manifest format written and read by this version.
pub const MANIFEST_FORMAT: &str = "pv-trace-v1";
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Npy {
        path: PathBuf,
        #[source]
        source: NpyError,
    },
    #[error("{path}: bad manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Sort key in forward order: (phase, layer, stage, position, part, expert).
pub type ForwardOrder = (u8, usize, usize, usize, usize, usize);

/// What identifies one captured tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorKey {
    pub stage: Stage,
    /// Sub-tensor of a stage that emits several (`Stage::parts`), e.g. `logits` of `moe_router`.
    pub part: Option<String>,
    /// None for the stages outside the layers.
    pub layer: Option<usize>,
    pub pos: usize,
    /// Set for per-expert stages.
    pub expert: Option<usize>,
}

impl TensorKey {
    pub fn new(stage: Stage, layer: Option<usize>, pos: usize) -> TensorKey {
        TensorKey {
            stage,
            part: None,
            layer,
            pos,
            expert: None,
        }
    }

    pub fn part(mut self, part: &str) -> TensorKey {
        self.part = Some(part.to_string());
        self
    }

    pub fn expert(mut self, expert: usize) -> TensorKey {
        self.expert = Some(expert);
        self
    }

    /// The file name this tensor is stored under.
    pub fn file_name(&self) -> String {
        let mut s = String::new();
        if let Some(l) = self.layer {
            s.push_str(&format!("L{l:03}."));
        }
        s.push_str(self.stage.name());
        if let Some(p) = &self.part {
            s.push('.');
            s.push_str(p);
        }
        if let Some(e) = self.expert {
            s.push_str(&format!(".e{e:03}"));
        }
        s.push_str(&format!(".p{:03}.npy", self.pos));
        s
    }

    /// Sort key in forward order: phase, layer, stage, position, part, expert. Positions come
    /// after the stage because a batched forward computes one stage for all positions before it
    /// moves to the next stage.
    pub fn forward_order(&self) -> ForwardOrder {
        let part_idx = self
            .part
            .as_deref()
            .and_then(|p| self.stage.parts().iter().position(|q| *q == p))
            .unwrap_or(0);
        (
            self.stage.phase() as u8,
            self.layer.unwrap_or(0),
            self.stage.index(),
            self.pos,
            part_idx,
            self.expert.unwrap_or(0),
        )
    }

    /// Human description: `layer 3 moe_router.logits pos 5 expert 7`.
    pub fn describe(&self) -> String {
        let mut s = match self.layer {
            Some(l) => format!("layer {l} {}", self.stage),
            None => self.stage.to_string(),
        };
        if let Some(p) = &self.part {
            s.push('.');
            s.push_str(p);
        }
        s.push_str(&format!(" pos {}", self.pos));
        if let Some(e) = self.expert {
            s.push_str(&format!(" expert {e}"));
        }
        s
    }
}

/// The model a trace was taken from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    /// sha256 of the first `header_bytes` bytes of the model file (for GGUF: the header, the
    /// metadata and the tensor table, everything before the tensor data). Two traces with equal
    /// digests come from files with the same metadata and tensor layout.
    pub header_sha256: String,
    pub header_bytes: u64,
    pub n_layer: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
}

/// One entry of the manifest's tensor list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTensor {
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    pub layer: Option<usize>,
    pub pos: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<usize>,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub file: String,
}

impl ManifestTensor {
    pub fn key(&self) -> Result<TensorKey, String> {
        let stage = Stage::from_name(&self.stage)
            .ok_or_else(|| format!("unknown stage `{}`", self.stage))?;
        Ok(TensorKey {
            stage,
            part: self.part.clone(),
            layer: self.layer,
            pos: self.pos,
            expert: self.expert,
        })
    }
}

/// `manifest.json` of a trace directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub model: ModelInfo,
    /// The plan spec as the user wrote it.
    pub plan: String,
    /// `cpu` or `cuda` (plus the device name where known).
    pub device: String,
    /// The activation precision of the forward, e.g. `f32`.
    pub precision: String,
    /// Debug description of the forward's options (planted-bug switches show up here).
    pub forward_options: String,
    pub tokens: Vec<u32>,
    pub tensors: Vec<ManifestTensor>,
}

/// What the caller knows about the run, written into the manifest by [`TraceWriter::finish`].
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub model: ModelInfo,
    pub device: String,
    pub precision: String,
    pub forward_options: String,
    pub tokens: Vec<u32>,
}

/// sha256 (hex) of the first `header_bytes` bytes of `path`.
pub fn header_digest(path: &Path, header_bytes: u64) -> Result<String, TraceError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(header_bytes)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if (buf.len() as u64) < header_bytes {
        return Err(TraceError::Invalid(format!(
            "{}: file is shorter than its header ({} < {header_bytes} bytes)",
            path.display(),
            buf.len()
        )));
    }
    Ok(format!("{:x}", Sha256::digest(&buf)))
}

/// Writes the tensors a [`TracePlan`] selects into a directory.
///
/// The forward's hook passes every tensor it is asked for; `save` writes it at once (a trace of
/// every stage of a large model does not fit in memory). Errors are returned to the caller, who
/// may keep the first one and report it after the forward (hooks are usually infallible).
pub struct TraceWriter {
    dir: PathBuf,
    plan: TracePlan,
    tensors: Vec<ManifestTensor>,
    seen: BTreeSet<TensorKey>,
}

impl TraceWriter {
    /// Creates `dir` (and its parents). Refuses a directory that already holds files, so that a
    /// trace never mixes tensors of two runs.
    pub fn create(dir: &Path, plan: TracePlan) -> Result<TraceWriter, TraceError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
        if entries.next().is_some() {
            return Err(TraceError::Invalid(format!(
                "{}: output directory is not empty; give a new directory so that traces do not mix",
                dir.display()
            )));
        }
        Ok(TraceWriter {
            dir: dir.to_path_buf(),
            plan,
            tensors: Vec::new(),
            seen: BTreeSet::new(),
        })
    }

    pub fn plan(&self) -> &TracePlan {
        &self.plan
    }

    /// Whether the plan selects this key (per-expert keys need their expert set).
    pub fn wants(&self, key: &TensorKey) -> bool {
        match (key.stage.per_expert(), key.layer, key.expert) {
            (true, Some(l), Some(e)) => self.plan.wants_expert(key.stage, l, key.pos, e),
            (true, _, _) => false,
            (false, layer, _) => self.plan.wants(key.stage, layer, key.pos),
        }
    }

    /// Writes one tensor if the plan selects it; returns whether it was written.
    pub fn save(
        &mut self,
        key: TensorKey,
        shape: &[usize],
        data: NpyData,
    ) -> Result<bool, TraceError> {
        if !self.wants(&key) {
            return Ok(false);
        }
        if let Some(p) = &key.part {
            if !key.stage.parts().contains(&p.as_str()) {
                return Err(TraceError::Invalid(format!(
                    "stage `{}` has no part `{p}` (parts: {:?})",
                    key.stage,
                    key.stage.parts()
                )));
            }
        }
        if key.stage.per_expert() != key.expert.is_some() {
            return Err(TraceError::Invalid(format!(
                "{}: an expert id is required exactly for per-expert stages",
                key.describe()
            )));
        }
        if !self.seen.insert(key.clone()) {
            return Err(TraceError::Invalid(format!(
                "{} was emitted twice by the forward",
                key.describe()
            )));
        }
        let file = key.file_name();
        let path = self.dir.join(&file);
        let dtype = data.descr().to_string();
        let arr = NpyArray::new(shape.to_vec(), data).map_err(|source| TraceError::Npy {
            path: path.clone(),
            source,
        })?;
        let f = fs::File::create(&path).map_err(io_err(&path))?;
        let mut w = BufWriter::new(f);
        arr.write_to(&mut w).map_err(|source| TraceError::Npy {
            path: path.clone(),
            source,
        })?;
        w.flush().map_err(io_err(&path))?;
        self.tensors.push(ManifestTensor {
            stage: key.stage.name().to_string(),
            part: key.part,
            layer: key.layer,
            pos: key.pos,
            expert: key.expert,
            dtype,
            shape: shape.to_vec(),
            file,
        });
        Ok(true)
    }

    /// Number of tensors written so far.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Writes `manifest.json` (tensors in forward order) and returns it.
    pub fn finish(mut self, info: RunInfo) -> Result<Manifest, TraceError> {
        self.tensors
            .sort_by_key(|t| t.key().map(|k| k.forward_order()).unwrap_or_default());
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_string(),
            model: info.model,
            plan: self.plan.spec().to_string(),
            device: info.device,
            precision: info.precision,
            forward_options: info.forward_options,
            tokens: info.tokens,
            tensors: self.tensors,
        };
        let path = self.dir.join(MANIFEST_FILE);
        let json = serde_json::to_string_pretty(&manifest)
            .map_err(|e| TraceError::Invalid(format!("cannot serialize the manifest: {e}")))?;
        fs::write(&path, json + "\n").map_err(io_err(&path))?;
        Ok(manifest)
    }
}

/// A trace directory opened for reading.
pub struct TraceDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl TraceDir {
    pub fn open(dir: &Path) -> Result<TraceDir, TraceError> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| TraceError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(TraceError::Manifest {
                path,
                message: format!("format `{}`, expected `{MANIFEST_FORMAT}`", manifest.format),
            });
        }
        for t in &manifest.tensors {
            t.key().map_err(|message| TraceError::Manifest {
                path: path.clone(),
                message,
            })?;
            // The file name comes from a JSON file that may have been edited: keep reads inside
            // the trace directory.
            if t.file.contains('/') || t.file.contains('\\') || t.file.starts_with('.') {
                return Err(TraceError::Manifest {
                    path: path.clone(),
                    message: format!("tensor file name `{}` leaves the directory", t.file),
                });
            }
        }
        Ok(TraceDir {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Loads one tensor and checks it against its manifest entry.
    pub fn load(&self, t: &ManifestTensor) -> Result<NpyArray, TraceError> {
        let path = self.dir.join(&t.file);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let arr = NpyArray::from_bytes(&bytes).map_err(|source| TraceError::Npy {
            path: path.clone(),
            source,
        })?;
        if arr.shape != t.shape || arr.data.descr() != t.dtype {
            return Err(TraceError::Manifest {
                path,
                message: format!(
                    "file holds {} {:?}, the manifest says {} {:?}",
                    arr.data.descr(),
                    arr.shape,
                    t.dtype,
                    t.shape
                ),
            });
        }
        Ok(arr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracing::plan::PlanDims;

    fn info() -> RunInfo {
        RunInfo {
            model: ModelInfo {
                path: "m.gguf".into(),
                header_sha256: "00".into(),
                header_bytes: 0,
                n_layer: 2,
                n_expert: 4,
                n_expert_used: 2,
            },
            device: "cpu".into(),
            precision: "f32".into(),
            forward_options: "default".into(),
            tokens: vec![1, 2],
        }
    }

    #[test]
    fn file_names() {
        let k = TensorKey::new(Stage::MoeRouter, Some(12), 5).part("logits");
        assert_eq!(k.file_name(), "L012.moe_router.logits.p005.npy");
        let k = TensorKey::new(Stage::MoeExpertGate, Some(3), 0).expert(17);
        assert_eq!(k.file_name(), "L003.moe_expert_gate.e017.p000.npy");
        assert_eq!(
            TensorKey::new(Stage::Logits, None, 5).file_name(),
            "logits.p005.npy"
        );
    }

    #[test]
    fn writes_only_what_the_plan_selects_and_reads_it_back() {
        let dims = PlanDims {
            n_layer: 2,
            n_expert: 4,
            n_tokens: 2,
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        let plan =
            TracePlan::parse("layer_out@layers=1@pos=last;moe_expert_up@experts=2", dims).unwrap();
        let mut w = TraceWriter::create(&dir, plan).unwrap();
        let v = NpyData::F32(vec![1.0, -2.0, 3.0]);
        assert!(!w
            .save(TensorKey::new(Stage::LayerOut, Some(0), 1), &[3], v.clone())
            .unwrap());
        assert!(w
            .save(TensorKey::new(Stage::LayerOut, Some(1), 1), &[3], v.clone())
            .unwrap());
        assert!(!w
            .save(
                TensorKey::new(Stage::MoeExpertUp, Some(0), 0).expert(1),
                &[3],
                v.clone()
            )
            .unwrap());
        assert!(w
            .save(
                TensorKey::new(Stage::MoeExpertUp, Some(0), 0).expert(2),
                &[3],
                v.clone()
            )
            .unwrap());
        // The same tensor twice is a forward bug, not something to overwrite silently.
        assert!(w
            .save(TensorKey::new(Stage::LayerOut, Some(1), 1), &[3], v.clone())
            .is_err());
        let m = w.finish(info()).unwrap();
        assert_eq!(m.tensors.len(), 2);
        // forward order: the expert stage of layer 0 comes before layer 1's output
        assert_eq!(m.tensors[0].file, "L000.moe_expert_up.e002.p000.npy");
        let t = TraceDir::open(&dir).unwrap();
        assert_eq!(t.manifest, m);
        let arr = t.load(&t.manifest.tensors[1]).unwrap();
        assert_eq!(arr.data, v);
        // A second run into the same directory is refused.
        let plan = TracePlan::everything(dims);
        assert!(TraceWriter::create(&dir, plan).is_err());
    }
}
