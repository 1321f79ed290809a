//! Text generation: prefill the prompt, then sample one token at a time through the KV cache,
//! stopping at EOS or after `max_tokens`.

use crate::model::{ForwardOptions, KvCache, Logits, Model, ModelError};
use crate::sampling::Sampler;

pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    pub stopped_at_eos: bool,
}

/// Generates after `prompt`, calling `on_token` with each new token id as soon as it exists.
pub fn generate(
    model: &Model<'_>,
    prompt: &[u32],
    max_tokens: usize,
    eos: Option<u32>,
    sampler: &mut Sampler,
    opts: &ForwardOptions,
    mut on_token: impl FnMut(u32),
) -> Result<GenerateStats, ModelError> {
    let mut cache = KvCache::new(
        model,
        (prompt.len() + max_tokens)
            .min(model.config.context_length)
            .max(prompt.len() + 1),
    );
    let t0 = std::time::Instant::now();
    let mut logits = model.forward(prompt, &mut cache, opts, Logits::Last, None)?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let mut generated = 0;
    let mut stopped_at_eos = false;
    while generated < max_tokens {
        let next = sampler.sample(&logits);
        if Some(next) == eos {
            stopped_at_eos = true;
            break;
        }
        on_token(next);
        generated += 1;
        if generated == max_tokens || cache.len() >= cache.capacity() {
            break;
        }
        logits = model.forward(&[next], &mut cache, opts, Logits::Last, None)?;
    }
    Ok(GenerateStats {
        prompt_tokens: prompt.len(),
        generated,
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
        stopped_at_eos,
    })
}
