//! What every hashwarden binary does the same way, so scripts and operators can rely on it:
//! a bad command line is one line on stderr and exit code 2 (`--help` has the rest), `--help` and
//! `--version` exit 0, and logs go to stderr (stdout carries only the tool's output, often JSON)
//! filtered by `RUST_LOG`, coloured only on a terminal.

pub mod config;
pub mod keyfile;
pub mod prometheus;
pub mod time;

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

/// A span of time as operators write it — `90s` (or `90`), `30m`, `4h`, `2d` — in seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?}: a number and s, m, h or d");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("{text:?} is not a duration"))
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

/// `RUST_LOG`, or `info` — but rumqttd (the embedded broker) logs every connection and
/// subscription at info, so it is heard from `warn` up.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn"))
}

/// How often one line of rumqttd's may be written at warn or above.
const BROKER_LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// rumqttd's warnings and errors, each line at most once every ten seconds: out of file
/// descriptors its accept loop retries at once and logs every failure (3.7 million lines, 592 MB,
/// in ten seconds once: #16). Our own listeners back off and count (`net-guard`); this is the
/// same bound around the embedded broker, whose loop is not ours.
pub fn broker_flood_guard<S>() -> tracing_subscriber::filter::DynFilterFn<
    S,
    impl Fn(&tracing::Metadata<'_>, &tracing_subscriber::layer::Context<'_, S>) -> bool,
> {
    let last: std::sync::Mutex<
        std::collections::HashMap<tracing::callsite::Identifier, std::time::Instant>,
    > = std::sync::Mutex::new(std::collections::HashMap::new());
    // Asked at every event (a plain `filter_fn` is cached per call site after its first answer).
    tracing_subscriber::filter::dynamic_filter_fn(move |meta, _| {
        if !meta.is_event()
            || !meta.target().starts_with("rumqttd")
            || *meta.level() > tracing::Level::WARN
        {
            return true;
        }
        let Ok(mut last) = last.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        let line = last
            .entry(meta.callsite())
            .or_insert(now - BROKER_LINE_EVERY);
        if now.duration_since(*line) < BROKER_LINE_EVERY {
            return false;
        }
        *line = now;
        true
    })
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    install(std::io::stderr, ansi);
}

/// Logs to the file at `path` at `info` (unless `RUST_LOG` says otherwise): for a command whose
/// terminal is for people, with many components logging in one process.
pub fn init_logging_to(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    install(std::sync::Mutex::new(file), false);
    Ok(())
}

fn install<W>(writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(log_filter())
        .with_filter(broker_flood_guard());
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_flood_from_the_broker_is_one_line_and_ours_are_all_kept() {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut lines) = self.0.lock() {
                    lines.extend_from_slice(bytes);
                }
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_filter(super::broker_flood_guard());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..10_000 {
                tracing::error!(target: "rumqttd::server::broker", i, "accept failed: too many open files");
            }
            for i in 0..3 {
                tracing::warn!(i, "one of ours");
                tracing::info!(target: "rumqttd::router", i, "broker info passes the guard");
            }
        });
        let text = String::from_utf8(lines.0.lock().map(|l| l.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(text.matches("too many open files").count(), 1, "{text}");
        assert_eq!(text.matches("one of ours").count(), 3, "{text}");
        assert_eq!(text.matches("passes the guard").count(), 3, "{text}");
    }

    #[test]
    fn durations_read_as_operators_write_them() {
        use super::parse_duration;
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("4h"), Ok(14_400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        for bad in ["", "0m", "h", "5w", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
