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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => pv::validate::run(args),
        Command::Schema(args) => pv::schema::run(args),
        Command::New(args) => pv::authoring::run_new(args),
        Command::Amend(args) => pv::authoring::run_amend(args),
        Command::Diff(args) => pv::diff::run(args),
        Command::List(args) => pv::list::run(args),
        Command::Status(args) => pv::status_cmd::run(args),
        Command::Verify(args) => pv::verify::run(args),
        Command::Evidence(args) => pv::evidence_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
