//! Command line and environment. Every setting is a flag and an environment variable; Finout's
//! exporter's variable names are honoured as they are. Parsed low (`args`: as typed, grouped
//! by what it configures), then resolved high (`settings`: checked and typed, once).

pub mod address;
pub mod args;
pub mod budget;
pub mod parse;
pub mod settings;

use clap::{Parser, Subcommand};

pub use args::{BenchArgs, LogFormat, Options, SourceKind, Variant};
use parse::parse_time;
pub use settings::{ConfigError, Destination, Settings, SourceSettings};

/// Exports Kubernetes cost-allocation metrics from Thanos to S3 in Finout's layout, reading raw
/// chunks over the StoreAPI (gRPC) and evaluating the metric catalog in-process.
#[derive(Parser, Debug)]
#[command(
    name = "storeapi-exporter",
    version,
    about,
    max_term_width = 100,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Options,
}

/// The exit codes, for `--help` (README, "Exit codes"; the Job's podFailurePolicy uses them).
const EXIT_CODES: &str = "Exit codes:
  0  success, also nothing to do
  2  bad configuration, unknown bucket, denied access: retrying cannot help
  3  the Querier, remote read, the HTTP API or S3 stayed unavailable through the retries, or a
     source the window expects is missing
  4  a window's data was refused (the engine cannot evaluate it)
  5  an internal error (a bug)
  6  stopped by SIGTERM or SIGINT";

/// What to do; without a subcommand, `run`.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// The CronJob: export every complete window since the saved state, apply retention, exit.
    Run,
    /// Export the windows starting in [--from, --to); never reads or writes state.
    Export {
        /// First window start to export, unix seconds or RFC 3339 (rounded up to a window).
        #[arg(long, value_parser = parse_time)]
        from: i64,
        /// End of the range (exclusive), unix seconds or RFC 3339.
        #[arg(long, value_parser = parse_time)]
        to: i64,
    },
    /// Export the same windows over --source grpc and --source http, alternating, and report
    /// wall time, bytes, memory and the Querier's CPU and memory for each (DIR/bench.json,
    /// bench.md, bench.svg).
    Bench(BenchArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_are_redacted() {
        let cli = Cli::parse_from([
            "storeapi-exporter",
            "--bearer-token",
            "s3cr3t-bearer",
            "--password",
            "s3cr3t-pass",
            "--auth-token",
            "s3cr3t-token",
            "--role-external-id",
            "s3cr3t-id",
        ]);
        let r = format!("{:?}", cli.opts);
        assert!(!r.contains("s3cr3t"), "{r}");
        assert!(r.contains("<redacted>"), "{r}");
    }
}
