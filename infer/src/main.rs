//! `infer`: the engine CLI. One module per subcommand.

mod bench;
mod bench_cuda;
mod common;
mod gpu;
mod inspect;
mod logits;
mod run;
mod synth;
mod tokenize;
mod trace;
mod trace_diff;

use clap::{Parser, Subcommand};

/// Qwen3-MoE inference engine CLI: run GGUF models on the CPU, dump logits for oracles,
/// benchmark, write synthetic models, trace the forward stage by stage.
///
/// Typical session:
///   infer synth --preset tiny --quant q4_k_m -o tiny.gguf
///   infer run tiny.gguf --prompt "the model" --max-tokens 16
///   infer tokenize tiny.gguf --text "the model" --ids
///   infer logits tiny.gguf --tokens 1,2,3 --out logits.npy
///   infer bench tiny.gguf --prompt-tokens 64 --gen-tokens 16
#[derive(Parser, Debug)]
#[command(name = "infer", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Synth(synth::SynthArgs),
    Tokenize(tokenize::TokenizeArgs),
    /// Show a GGUF file's metadata and tensor table.
    Inspect(inspect::InspectArgs),
    Run(run::RunArgs),
    Logits(logits::LogitsArgs),
    Bench(bench::BenchArgs),
    Trace(trace::TraceArgs),
    TraceDiff(trace_diff::TraceDiffArgs),
}

fn main() {
    let r = match Cli::parse().cmd {
        Cmd::Synth(a) => synth::run(a),
        Cmd::Tokenize(a) => tokenize::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Logits(a) => logits::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Trace(a) => trace::run(a),
        Cmd::TraceDiff(a) => trace_diff::run(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
