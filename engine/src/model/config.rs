//! The model configuration, read from GGUF metadata only.
//!
//! Every value the forward depends on comes from a named key; a missing key is an error that
//! names it, never a silent default, because a wrong default (say, the RMSNorm epsilon or the
//! RoPE base) gives a model that runs and is subtly wrong. The one exception is documented on
//! the field: `rope.freq_base` defaults to 10000 as in llama.cpp, and `head_dim` defaults to
//! `hidden / n_head` as in llama.cpp when `attention.key_length` is absent.

/// A metadata value as the config reader sees it (GGUF's integer widths folded together).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Int(i64),
    Float(f64),
    Str(String),
    Other,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("GGUF metadata key `{0}` is missing")]
    Missing(String),
    #[error("GGUF metadata key `{key}` has the wrong type (expected {expected})")]
    WrongType { key: String, expected: &'static str },
    #[error("GGUF metadata key `{key}` = {value} is invalid: {why}")]
    Invalid {
        key: String,
        value: String,
        why: String,
    },
    #[error(
        "architecture `{0}` (general.architecture) is not supported: expected qwen3moe or qwen3"
    )]
    UnsupportedArch(String),
}

/// Which family the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `qwen3moe`: every layer is an MoE layer.
    Qwen3Moe,
    /// `qwen3`: dense SwiGLU FFN.
    Qwen3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Qwen3 => "qwen3",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// `<arch>.context_length`
    pub context_length: usize,
    pub rms_eps: f32,
    /// `<arch>.rope.freq_base`; 10000 when absent (llama.cpp's default).
    pub rope_base: f32,
    /// MoE only (0 for dense).
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// `<arch>.expert_feed_forward_length` for MoE, `<arch>.feed_forward_length` for dense.
    pub ffn_dim: usize,
    /// Rows of `token_embd` (checked against the tensor when the weights load).
    pub vocab: usize,
}

impl Config {
    /// Reads the config through `get`, which returns the value of a metadata key. `vocab` is the
    /// number of `tokenizer.ggml.tokens` if present, else filled in from `token_embd` by the
    /// weight loader (`vocab_hint`).
    pub fn from_metadata(
        get: &dyn Fn(&str) -> Option<MetaValue>,
        vocab_hint: Option<usize>,
    ) -> Result<Config, ConfigError> {
        let arch_name = get_str(get, "general.architecture")?;
        let arch = match arch_name.as_str() {
            "qwen3moe" => Arch::Qwen3Moe,
            "qwen3" => Arch::Qwen3,
            other => return Err(ConfigError::UnsupportedArch(other.to_string())),
        };
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");
        let n_layer = get_count(get, &key("block_count"))?;
        let hidden = get_count(get, &key("embedding_length"))?;
        let n_head = get_count(get, &key("attention.head_count"))?;
        let n_head_kv = get_count(get, &key("attention.head_count_kv"))?;
        let context_length = get_count(get, &key("context_length"))?;
        let rms_eps = get_float(get, &key("attention.layer_norm_rms_epsilon"))? as f32;
        let rope_base = match get(&key("rope.freq_base")) {
            None => 10000.0,
            Some(_) => get_float(get, &key("rope.freq_base"))? as f32,
        };
        let head_dim = match get(&key("attention.key_length")) {
            None => hidden / n_head,
            Some(_) => get_count(get, &key("attention.key_length"))?,
        };
        if let Some(MetaValue::Int(vlen)) = get(&key("attention.value_length")) {
            if vlen as usize != head_dim {
                return Err(ConfigError::Invalid {
                    key: key("attention.value_length"),
                    value: vlen.to_string(),
                    why: format!("must equal the key length {head_dim}"),
                });
            }
        }
        if n_head % n_head_kv != 0 {
            return Err(ConfigError::Invalid {
                key: key("attention.head_count"),
                value: n_head.to_string(),
                why: format!("must be a multiple of attention.head_count_kv = {n_head_kv}"),
            });
        }
        if head_dim % 2 != 0 {
            return Err(ConfigError::Invalid {
                key: key("attention.key_length"),
                value: head_dim.to_string(),
                why: "RoPE needs an even head dimension".into(),
            });
        }
        if !(rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(ConfigError::Invalid {
                key: key("attention.layer_norm_rms_epsilon"),
                value: rms_eps.to_string(),
                why: "must be in (0, 1)".into(),
            });
        }
        if !(rope_base > 1.0 && rope_base.is_finite()) {
            return Err(ConfigError::Invalid {
                key: key("rope.freq_base"),
                value: rope_base.to_string(),
                why: "must be a finite number > 1".into(),
            });
        }
        let (n_expert, n_expert_used, ffn_dim) = match arch {
            Arch::Qwen3Moe => {
                let n_expert = get_count(get, &key("expert_count"))?;
                let n_used = get_count(get, &key("expert_used_count"))?;
                if n_used > n_expert {
                    return Err(ConfigError::Invalid {
                        key: key("expert_used_count"),
                        value: n_used.to_string(),
                        why: format!("exceeds expert_count = {n_expert}"),
                    });
                }
                (
                    n_expert,
                    n_used,
                    get_count(get, &key("expert_feed_forward_length"))?,
                )
            }
            Arch::Qwen3 => (0, 0, get_count(get, &key("feed_forward_length"))?),
        };
        Ok(Config {
            arch,
            n_layer,
            hidden,
            n_head,
            n_head_kv,
            head_dim,
            context_length,
            rms_eps,
            rope_base,
            n_expert,
            n_expert_used,
            ffn_dim,
            vocab: vocab_hint.unwrap_or(0),
        })
    }

    /// Query heads per KV head (GQA group size).
    pub fn gqa_group(&self) -> usize {
        self.n_head / self.n_head_kv
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

fn get_str(get: &dyn Fn(&str) -> Option<MetaValue>, key: &str) -> Result<String, ConfigError> {
    match get(key) {
        None => Err(ConfigError::Missing(key.into())),
        Some(MetaValue::Str(s)) => Ok(s),
        Some(_) => Err(ConfigError::WrongType {
            key: key.into(),
            expected: "string",
        }),
    }
}

/// A positive integer count.
fn get_count(get: &dyn Fn(&str) -> Option<MetaValue>, key: &str) -> Result<usize, ConfigError> {
    match get(key) {
        None => Err(ConfigError::Missing(key.into())),
        Some(MetaValue::Int(v)) if v > 0 => Ok(v as usize),
        Some(MetaValue::Int(v)) => Err(ConfigError::Invalid {
            key: key.into(),
            value: v.to_string(),
            why: "must be positive".into(),
        }),
        Some(_) => Err(ConfigError::WrongType {
            key: key.into(),
            expected: "integer",
        }),
    }
}

fn get_float(get: &dyn Fn(&str) -> Option<MetaValue>, key: &str) -> Result<f64, ConfigError> {
    match get(key) {
        None => Err(ConfigError::Missing(key.into())),
        Some(MetaValue::Float(v)) => Ok(v),
        Some(MetaValue::Int(v)) => Ok(v as f64),
        Some(_) => Err(ConfigError::WrongType {
            key: key.into(),
            expected: "number",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<String, MetaValue> {
        let mut m = HashMap::new();
        m.insert(
            "general.architecture".into(),
            MetaValue::Str("qwen3moe".into()),
        );
        for (k, v) in [
            ("block_count", 2),
            ("embedding_length", 64),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 2),
            ("attention.key_length", 16),
            ("context_length", 256),
            ("expert_count", 8),
            ("expert_used_count", 2),
            ("expert_feed_forward_length", 32),
        ] {
            m.insert(format!("qwen3moe.{k}"), MetaValue::Int(v));
        }
        m.insert(
            "qwen3moe.attention.layer_norm_rms_epsilon".into(),
            MetaValue::Float(1e-6),
        );
        m.insert("qwen3moe.rope.freq_base".into(), MetaValue::Float(1e6));
        m
    }

    fn load(m: &HashMap<String, MetaValue>) -> Result<Config, ConfigError> {
        Config::from_metadata(&|k| m.get(k).cloned(), Some(100))
    }

    #[test]
    fn reads_a_valid_config() {
        let c = load(&base()).unwrap();
        assert_eq!(
            (c.n_layer, c.hidden, c.head_dim, c.n_expert, c.n_expert_used),
            (2, 64, 16, 8, 2)
        );
        assert_eq!(c.rope_base, 1e6);
        assert_eq!(c.gqa_group(), 2);
    }

    #[test]
    fn every_missing_key_is_named() {
        for k in [
            "general.architecture",
            "qwen3moe.block_count",
            "qwen3moe.embedding_length",
            "qwen3moe.attention.head_count",
            "qwen3moe.attention.head_count_kv",
            "qwen3moe.attention.layer_norm_rms_epsilon",
            "qwen3moe.expert_count",
            "qwen3moe.expert_used_count",
            "qwen3moe.expert_feed_forward_length",
            "qwen3moe.context_length",
        ] {
            let mut m = base();
            m.remove(k);
            let e = load(&m).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
        }
    }

    #[test]
    fn inconsistent_values_are_errors_naming_the_key() {
        let mut m = base();
        m.insert("qwen3moe.expert_used_count".into(), MetaValue::Int(9));
        assert!(load(&m)
            .unwrap_err()
            .to_string()
            .contains("qwen3moe.expert_used_count"));
        let mut m = base();
        m.insert("qwen3moe.attention.head_count".into(), MetaValue::Int(3));
        assert!(load(&m)
            .unwrap_err()
            .to_string()
            .contains("qwen3moe.attention.head_count"));
        let mut m = base();
        m.insert(
            "general.architecture".into(),
            MetaValue::Str("llama".into()),
        );
        assert!(load(&m).unwrap_err().to_string().contains("llama"));
        let mut m = base();
        m.insert("qwen3moe.block_count".into(), MetaValue::Str("2".into()));
        assert!(matches!(load(&m), Err(ConfigError::WrongType { .. })));
    }
}
