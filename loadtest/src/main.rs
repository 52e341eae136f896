//! `huiying-loadtest`: tools to load-test huiying. For now one subcommand, `gen`, which writes
//! realistic generic-format mentions as JSON Lines to stdout (see README.md).

mod gen;
mod vocab;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "huiying-loadtest",
    version,
    about = "Load-test tools for huiying."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write N realistic mentions as JSON Lines to stdout (deterministic per seed).
    Gen {
        /// Mentions to write.
        #[arg(long)]
        count: u64,
        /// RNG seed: the same seed (and version of this tool) gives the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Mentions per millisecond of event time (20 = 20 000 mentions/s).
        #[arg(long, default_value_t = 20.0, value_parser = positive)]
        rate_per_ms: f64,
        /// Event time of the first mention, unix milliseconds.
        #[arg(long, default_value_t = 1_780_000_000_000)]
        start_ms: i64,
        /// Distinct authors.
        #[arg(long, default_value_t = 500_000)]
        authors: u32,
        /// Zipf exponent of author activity (higher = a few authors post more).
        #[arg(long, default_value_t = 0.8, value_parser = positive)]
        zipf: f64,
    },
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("must be a positive number, not {s:?}")),
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Gen {
            count,
            seed,
            rate_per_ms,
            start_ms,
            authors,
            zipf,
        } => {
            let cfg = gen::GenConfig {
                count,
                seed,
                rate_per_ms,
                start_ms,
                authors: authors.max(1),
                zipf,
            };
            gen::run(cfg, std::io::stdout().lock())?;
        }
    }
    Ok(())
}
