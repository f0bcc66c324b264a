//! What every hashwarden binary does the same way, so scripts and operators can rely on it:
//! a bad command line is one line on stderr and exit code 2 (`--help` has the rest), `--help` and
//! `--version` exit 0, and logs go to stderr (stdout carries only the tool's output, often JSON)
//! filtered by `RUST_LOG`, coloured only on a terminal.

pub mod config;
pub mod keyfile;
pub mod prometheus;

use std::process::ExitCode;

use clap::Parser;

/// The exit code of a usage or input error, as `grep` and friends use it.
pub const USAGE_ERROR: u8 = 2;

/// Parses the process's arguments; on failure the caller returns the given exit code, with the
/// message already printed.
pub fn parse_args<P: Parser>() -> Result<P, ExitCode> {
    P::try_parse().map_err(|e| report(&e))
}

fn report(e: &clap::Error) -> ExitCode {
    if e.use_stderr() {
        eprintln!("{}", first_line(e));
        ExitCode::from(USAGE_ERROR)
    } else {
        // --help and --version render to stdout and are a success.
        let _ = e.print();
        ExitCode::SUCCESS
    }
}

/// clap's rendering spans several lines (usage, a hint); the first non-empty one names the problem.
pub fn first_line(e: &clap::Error) -> String {
    let rendered = e.to_string();
    rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("invalid arguments")
        .to_string()
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled, so a signal during start-up is not the default (fatal) action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let wait = |signal: std::io::Result<tokio::signal::unix::Signal>| async move {
            match signal {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(terminate) => tracing::info!("SIGTERM"),
            () = wait(interrupt) => tracing::info!("SIGINT"),
        }
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rumqttd (the embedded broker) logs every connection and subscription at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long)]
        speed: f64,
    }

    #[test]
    fn a_bad_value_is_one_line_naming_the_argument() {
        let e = Args::try_parse_from(["tool", "--speed", "fast"]).expect_err("not a number");
        assert!(
            e.to_string().lines().count() > 1,
            "clap's own message is multi-line"
        );
        let line = first_line(&e);
        assert!(!line.contains('\n'));
        assert!(line.contains("--speed") && line.contains("fast"), "{line}");
        assert!(e.use_stderr());
    }

    #[test]
    fn help_is_not_an_error() {
        let e = Args::try_parse_from(["tool", "--help"]).expect_err("help short-circuits");
        assert!(!e.use_stderr());
    }
}
