//! The `storeapi-exporter` binary: parse the command line, set up logging, run, exit with the
//! documented code.

use std::process::ExitCode;

use clap::Parser;
use storeapi_exporter::cli::{Cli, LogFormat};
use storeapi_exporter::{cmd, exit, observe};

fn main() -> ExitCode {
    limit_malloc_arenas();
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

/// glibc gives threads that allocate at the same time arenas of their own (up to 8 per core)
/// and keeps what is freed in each: the decoding threads, the runtime's workers and the file
/// writers then each hold on to freed memory, and the peak grows with the span. Measured on
/// the 110k-series bench (release build, `export` over the last 1 h and 24 h): 4 arenas held
/// 215 MiB for 1 h and 319 to 355 MiB for 24 h; one arena holds 196 to 201 MiB for 1 h and
/// 202 to 207 MiB for 24 h, for 4 to 7 % more wall time on 2 cores. A MALLOC_ARENA_MAX set by
/// the user wins. Called by `main` before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
                return;
            }
            // M_ARENA_MAX in glibc's malloc.h
            const M_ARENA_MAX: std::ffi::c_int = -8;
            unsafe extern "C" {
                fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
            }
            // SAFETY: mallopt only changes a tunable under malloc's own lock; arenas that
            // already exist stay valid, later threads share the main one
            unsafe {
                mallopt(M_ARENA_MAX, 1);
            }
        });
    }
}
