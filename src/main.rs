//! The `storeapi-exporter` binary: parse the command line, set up logging, run, exit with the
//! documented code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use storeapi_exporter::app;
use storeapi_exporter::config::{Cli, LogFormat};
use storeapi_exporter::export::exit;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    storeapi_exporter::limit_malloc_arenas();
    let cli = Cli::parse();
    let json = match cli.opts.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let filter = EnvFilter::try_new(&cli.opts.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    tracing::info!(config = %cli.opts.redacted(), version = env!("CARGO_PKG_VERSION"), "starting");
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
    match runtime.block_on(app::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let code = e.exit_code();
            // once, with each source's message unless the message above already holds it
            let err = anyhow::Error::new(e);
            tracing::error!(
                error = storeapi_exporter::error_chain(err.as_ref()),
                exit_code = code,
                "failed"
            );
            ExitCode::from(code)
        }
    }
}
