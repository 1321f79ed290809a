//! `infer trace-diff DIR_A DIR_B`: compares two traces written by `infer trace`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use engine::tracing::diff::{diff_dirs, render_svg, render_text, DiffOptions};

/// Compare two trace directories stage by stage and name the first divergence.
///
/// Tensors are matched by stage, layer, position and expert, and visited in forward order. The
/// table shows, per layer and stage, the worst cosine over positions and experts, the largest
/// absolute difference and NaN/Inf counts; router top-k id sets are compared with their margins.
#[derive(clap::Args, Debug)]
pub struct TraceDiffArgs {
    /// The reference trace (e.g. the CPU trace)
    pub a: PathBuf,
    /// The trace under suspicion (e.g. the GPU trace)
    pub b: PathBuf,
    /// Print the full report as JSON (every tensor comparison included) instead of the table
    #[arg(long)]
    pub json: bool,
    /// Show only the table rows that diverged or hold NaN/Inf
    #[arg(long)]
    pub only_diverged: bool,
    /// Also write an SVG plot of 1 - cosine per layer and stage to this file
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
    /// A tensor whose cosine similarity is below this diverges
    #[arg(long, default_value_t = 0.9999)]
    pub threshold: f64,
    /// Router id-set disagreements whose k-th/(k+1)-th probability margin is below this (on
    /// either side) are near-ties: listed, but not counted as divergences
    #[arg(long, default_value_t = 1e-3)]
    pub tie_margin: f64,
    /// Exit with an error when a divergence is found (for scripts)
    #[arg(long)]
    pub fail_on_divergence: bool,
}

pub fn run(args: TraceDiffArgs) -> Result<()> {
    if !(-1.0..=1.0).contains(&args.threshold) {
        bail!(
            "--threshold {} is not a cosine (it must lie in [-1, 1])",
            args.threshold
        );
    }
    if !(args.tie_margin >= 0.0 && args.tie_margin.is_finite()) {
        bail!(
            "--tie-margin {} must be a finite number >= 0",
            args.tie_margin
        );
    }
    let opts = DiffOptions {
        threshold: args.threshold,
        tie_margin: args.tie_margin,
    };
    let report = diff_dirs(&args.a, &args.b, opts).with_context(|| {
        format!(
            "comparing traces {} and {}",
            args.a.display(),
            args.b.display()
        )
    })?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("serializing the report")? + "\n"
    } else {
        render_text(&report, args.only_diverged)
    };
    write_stdout(&text)?;
    if let Some(path) = &args.plot {
        std::fs::write(path, render_svg(&report))
            .with_context(|| format!("writing the plot to {}", path.display()))?;
        if !args.json {
            write_stdout(&format!("plot: {}\n", path.display()))?;
        }
    }
    if args.fail_on_divergence {
        if let Some(d) = &report.first_divergence {
            bail!("divergence at {}: {}", d.location.description, d.reason);
        }
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`trace-diff ... | head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
