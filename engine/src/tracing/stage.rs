//! The named stages of the Qwen3-MoE forward, in the order the forward computes them.
//!
//! The order matters: `trace-diff` names the *first* divergence, and "first" means first in this
//! order (layer-major; inside a layer, this table's order). The names are the ones the CPU and
//! CUDA forwards pass to the trace hook, and the ones users type in a plan spec.

use std::fmt;

/// Where a stage sits: before the layers, inside every layer, or after the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Computed once, before layer 0 (`embed`).
    Pre,
    /// Computed in every layer.
    Layer,
    /// Computed once, after the last layer (`final_norm`, `logits`).
    Post,
}

/// A named stage of the forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Embed,
    AttnNorm,
    Q,
    K,
    V,
    QNorm,
    KNorm,
    Rope,
    AttnOut,
    AttnResidual,
    FfnNorm,
    MoeRouter,
    MoeExpertGate,
    MoeExpertUp,
    MoeExpertSwiglu,
    MoeExpertOut,
    MoeFfnOut,
    LayerOut,
    FinalNorm,
    Logits,
}

impl Stage {
    /// Every stage, in forward order.
    pub const ALL: [Stage; 20] = [
        Stage::Embed,
        Stage::AttnNorm,
        Stage::Q,
        Stage::K,
        Stage::V,
        Stage::QNorm,
        Stage::KNorm,
        Stage::Rope,
        Stage::AttnOut,
        Stage::AttnResidual,
        Stage::FfnNorm,
        Stage::MoeRouter,
        Stage::MoeExpertGate,
        Stage::MoeExpertUp,
        Stage::MoeExpertSwiglu,
        Stage::MoeExpertOut,
        Stage::MoeFfnOut,
        Stage::LayerOut,
        Stage::FinalNorm,
        Stage::Logits,
    ];

    /// The name used in plan specs, file names and manifests.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Embed => "embed",
            Stage::AttnNorm => "attn_norm",
            Stage::Q => "q",
            Stage::K => "k",
            Stage::V => "v",
            Stage::QNorm => "q_norm",
            Stage::KNorm => "k_norm",
            Stage::Rope => "rope",
            Stage::AttnOut => "attn_out",
            Stage::AttnResidual => "attn_residual",
            Stage::FfnNorm => "ffn_norm",
            Stage::MoeRouter => "moe_router",
            Stage::MoeExpertGate => "moe_expert_gate",
            Stage::MoeExpertUp => "moe_expert_up",
            Stage::MoeExpertSwiglu => "moe_expert_swiglu",
            Stage::MoeExpertOut => "moe_expert_out",
            Stage::MoeFfnOut => "moe_ffn_out",
            Stage::LayerOut => "layer_out",
            Stage::FinalNorm => "final_norm",
            Stage::Logits => "logits",
        }
    }

    /// Looks a stage up by its name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// Position in forward order (0 = `embed`).
    pub fn index(self) -> usize {
        self as usize
    }

    pub const fn phase(self) -> Phase {
        match self {
            Stage::Embed => Phase::Pre,
            Stage::FinalNorm | Stage::Logits => Phase::Post,
            _ => Phase::Layer,
        }
    }

    /// True for stages computed once per selected expert (the tensor key carries an expert id).
    pub const fn per_expert(self) -> bool {
        matches!(
            self,
            Stage::MoeExpertGate
                | Stage::MoeExpertUp
                | Stage::MoeExpertSwiglu
                | Stage::MoeExpertOut
        )
    }

    /// The sub-tensors a stage emits, if it emits more than one. `rope` emits the rotated q and
    /// k; `moe_router` emits the logits over all experts, the chosen ids, their renormalised
    /// weights and the margin between the k-th and (k+1)-th probability.
    pub const fn parts(self) -> &'static [&'static str] {
        match self {
            Stage::Rope => &["q", "k"],
            Stage::MoeRouter => &["logits", "topk_ids", "topk_weights", "margin"],
            _ => &[],
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_is_the_declaration_order() {
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(Stage::from_name(s.name()), Some(*s));
            assert_eq!(s.index(), i);
        }
        assert_eq!(Stage::from_name("moe_routr"), None);
    }

    #[test]
    fn phases_are_monotone_in_forward_order() {
        let phases: Vec<Phase> = Stage::ALL.iter().map(|s| s.phase()).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]));
    }
}
