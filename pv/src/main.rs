//! The `pv` command line. Each subcommand is `pv::<module>::run(args) -> Result<ExitCode>`;
//! adding one is a variant here and an arm in `main`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pv",
    version,
    about = "Contract-first verification: contracts, falsifiers, evidence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check contracts: YAML, schema, semantic rules, history (exit 0 valid, 1 invalid, 2 usage/IO).
    Validate(pv::validate::Args),
    /// Print the JSON Schema of contract files.
    Schema(pv::schema::Args),
    /// Set up pv in a cargo project: pv.toml, an example contract and bound test, CI workflow.
    #[command(long_about = pv::init::LONG_ABOUT)]
    Init(pv::init::Args),
    /// Create a new contract (valid v0.1.0 scaffold).
    New(pv::authoring::NewArgs),
    /// Bump a contract's version and append an amendment entry.
    Amend(pv::authoring::AmendArgs),
    /// Show what changed between two versions of a contract (files or REV:path).
    Diff(pv::diff::Args),
    /// List contracts with versions and counts.
    List(pv::list::Args),
    /// Stage status derived from contracts and evidence (docs/status.md).
    Status(pv::status_cmd::Args),
    /// Validate contracts, run every falsifier, print the derived status.
    Verify(pv::verify::Args),
    /// Evidence records: traceability report, record schema.
    Evidence(pv::evidence_cmd::Args),
    /// Contracts (depends_on) and stages (requires) as DAGs: dot, JSON, or SVG by status.
    Graph(pv::graph::Args),
    /// Proof obligations discharged by fresh passing evidence or harnesses, per contract.
    Coverage(pv::coverage::Args),
    /// A contract's equations and proof obligations (text or LaTeX).
    Show(pv::show::Args),
    /// Follow equation -> obligation -> falsifier -> test -> evidence; exit 1 on any break.
    Audit(pv::audit::Args),
    /// Kani harness skeletons (failing until written) for obligations marked `kani: true`.
    Kani(pv::kani::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => pv::validate::run(args),
        Command::Schema(args) => pv::schema::run(args),
        Command::Init(args) => pv::init::run(args),
        Command::New(args) => pv::authoring::run_new(args),
        Command::Amend(args) => pv::authoring::run_amend(args),
        Command::Diff(args) => pv::diff::run(args),
        Command::List(args) => pv::list::run(args),
        Command::Status(args) => pv::status_cmd::run(args),
        Command::Verify(args) => pv::verify::run(args),
        Command::Evidence(args) => pv::evidence_cmd::run(args),
        Command::Graph(args) => pv::graph::run(args),
        Command::Coverage(args) => pv::coverage::run(args),
        Command::Show(args) => pv::show::run(args),
        Command::Audit(args) => pv::audit::run(args),
        Command::Kani(args) => pv::kani::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
