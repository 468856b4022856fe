//! The `storeapi-exporter` binary: parse the command line, set up logging, run, exit with the
//! documented code.

use std::process::ExitCode;

use clap::Parser;
use storeapi_exporter::cli::{Cli, LogFormat};
use storeapi_exporter::{cmd, exit, observe};

fn main() -> ExitCode {
    exit_internal_on_panic();
    let cli = Cli::parse();
    let json = match cli.opts.log.log_format {
        LogFormat::Json => Some(true),
        LogFormat::Text => Some(false),
        LogFormat::Auto => None,
    };
    observe::init_logging(json, &cli.opts.log.log_level);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("storeapi-exporter: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let result = runtime.block_on(cmd::run(cli));
    // tasks of abandoned work (a call to a frozen peer, a blocking write) must not hold the exit
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            // once, with each source's message unless the message above already holds it
            tracing::error!(
                error = observe::error_chain(&e),
                exit_code = e.exit_code(),
                "failed"
            );
            ExitCode::from(e.exit_code())
        }
    }
}

/// A panic is a bug: logged, then the process exits with the internal-error code (5), not
/// Rust's 101, so the Job's podFailurePolicy treats it as documented. Nothing partial is left:
/// uploads are whole or nothing and the state only moves after a window's files.
fn exit_internal_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // the logging may not be set up yet: stderr as well
        eprintln!("storeapi-exporter: internal error: panic at {at}: {what}");
        tracing::error!(
            at,
            panic = what,
            exit_code = exit::INTERNAL,
            "internal error: panic"
        );
        std::process::exit(i32::from(exit::INTERNAL));
    }));
}

/// jemalloc, not glibc's malloc. The windows' decoding, evaluation and rendering allocate on
/// several threads at once: glibc capped to one arena (four held 1.5 times the memory over a
/// 24 h backfill) made them queue on its lock, a tenth of the exporter's CPU in futex calls,
/// where jemalloc's per-thread caches serve most allocations without one. One arena as well,
/// and freed pages handed back after a second: 17 % less CPU per point on the 22k bench, peak
/// RSS 77 to 81 MiB against 61 to 74 (docs/benchmarks.md, "The allocator").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc before `main`; options in `_RJEM_MALLOC_CONF` are read after these and win.
/// A reference to an array, not a slice: jemalloc reads a C string pointer, one word.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 47] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
