//! `huiying-loadtest`: `gen` writes realistic mentions as JSON Lines; `bursts` the labelled
//! dev burst set for `huiying eval bursts`; `text` real post text at any volume; `run` runs a scenario
//! against huiying and writes a report (see README.md).

use clap::{Parser, Subcommand};
use huiying_loadtest::bursts::{self, positive};
use huiying_loadtest::{gen, run};
use std::path::PathBuf;

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
    /// Write the labelled dev burst set for `huiying eval bursts` (deterministic per seed):
    /// hours of real background with real crises injected as bursts.
    Bursts {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        cfg: bursts::BurstsConfig,
    },
    /// Write real post text (CED dev and CrisisLex T6 texts cycled, fresh ids and authors) as
    /// JSON Lines to stdout: the input of the real-text throughput and memory figures.
    Text {
        #[command(flatten)]
        cfg: bursts::TextConfig,
    },
    /// Run a scenario (`scenarios/<name>`) against huiying and write result.json, report.md
    /// and chart.svg.
    Run {
        /// The scenario folder.
        scenario: PathBuf,
        /// Output folder (default: `loadtest/runs/<scenario>-<time>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `huiying` binary to start as the engine process.
        #[arg(long, default_value = "target/release/huiying")]
        huiying: PathBuf,
        /// Run the engine inside this process instead (no separate process, no pinning).
        #[arg(long)]
        in_process: bool,
        /// CPUs for the engine (`taskset -c`); empty: no pinning.
        #[arg(long, default_value = "0")]
        engine_cpus: String,
        /// Bound the traffic to this many seconds (e.g. the soak).
        #[arg(long)]
        duration: Option<f64>,
        /// Rules directory.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
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
                ..gen::GenConfig::default()
            };
            gen::run(cfg, std::io::stdout().lock())?;
        }
        Cmd::Bursts { out, cfg } => {
            let f = std::fs::File::create(&out)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
            let s = bursts::run(&cfg, std::io::BufWriter::new(f))?;
            eprintln!(
                "{}: {} background lines, {} English and {} Chinese bursts ({} posts)",
                out.display(),
                s.background,
                s.en_bursts,
                s.zh_bursts,
                s.burst_posts
            );
        }
        Cmd::Text { cfg } => {
            let n = bursts::text(&cfg, std::io::stdout().lock())?;
            eprintln!("{n} lines of real text");
        }
        Cmd::Run {
            scenario,
            out,
            huiying,
            in_process,
            engine_cpus,
            duration,
            rules,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let name = scenario
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            let out = out.unwrap_or_else(|| {
                PathBuf::from("loadtest/runs").join(format!(
                    "{name}-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            });
            let engine = if in_process {
                run::EngineMode::InProcess
            } else {
                run::EngineMode::Spawn {
                    bin: huiying,
                    cpus: (!engine_cpus.is_empty()).then_some(engine_cpus),
                }
            };
            let rt = tokio::runtime::Runtime::new()?;
            let result = rt.block_on(run::run(run::RunOptions {
                scenario_dir: scenario,
                out_dir: out.clone(),
                engine,
                max_duration: duration,
                rules: rules.unwrap_or_else(run::default_rules),
            }))?;
            print!("{}", huiying_loadtest::report::markdown(&result));
            eprintln!("Report: {}", out.join("report.md").display());
        }
    }
    Ok(())
}
