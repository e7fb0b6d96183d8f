use std::io::IsTerminal as _;

use clap::Parser as _;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match rekisteri::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
