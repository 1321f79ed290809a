//! `infer`: the engine CLI.
//!
//! (Minimal entry point written by the tracing work so that `trace-diff` can be run; the model
//! engineer owns this file and will add `synth`, `run`, `logits`, ... here.)

mod trace;
mod trace_diff;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "infer", version, about = "Qwen3-MoE inference engine CLI")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Trace(trace::TraceArgs),
    TraceDiff(trace_diff::TraceDiffArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Trace(args) => trace::run(args),
        Cmd::TraceDiff(args) => trace_diff::run(args),
    }
}
