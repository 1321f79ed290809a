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
    /// Stage status derived from contracts and evidence (docs/status.md).
    Status(pv::status_cmd::Args),
    /// Validate contracts, run every falsifier, print the derived status.
    Verify(pv::verify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => pv::validate::run(args),
        Command::Schema(args) => pv::schema::run(args),
        Command::Status(args) => pv::status_cmd::run(args),
        Command::Verify(args) => pv::verify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
