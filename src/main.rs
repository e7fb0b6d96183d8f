use std::io::IsTerminal as _;

use clap::Parser as _;
use rekisteri::cli::LogFormat;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = rekisteri::cli::Cli::parse();
    let default_level = match cli.command {
        rekisteri::cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    // Logs go to standard error: standard output carries only what a
    // command prints for its caller, such as a new key.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }

    match rekisteri::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
