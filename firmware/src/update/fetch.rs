//! Updates a fleet command asks for: the image fetched from an HTTP(S) URL and streamed straight
//! into the inactive slot through the same checks as a local install, plus the pin to the image
//! the host meant. It runs off the mining loop (a download takes seconds to minutes); the loop
//! awaits [`Updater::finished`] beside its other events and acknowledges the command then.

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::UpdateSection;
use super::install::{Expected, install_from};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A stalled transfer is given up after this long without a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Room for the magic, the length, the manifest and the signature ahead of the payload.
const HEADER_ALLOWANCE: u64 = fleet_proto::image::MAX_MANIFEST as u64 + 1024;

/// What an `update` command asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub url: String,
    pub expected: Expected,
}

type Outcome = Result<String, String>;

/// At most one update at a time, for the fleet command that asked for it.
#[derive(Debug)]
pub struct Updater {
    data_dir: PathBuf,
    board: &'static str,
    section: UpdateSection,
    /// Whether a supervisor started this daemon: without one an installed image never runs.
    supervised: bool,
    running: Option<(String, JoinHandle<Outcome>)>,
}

impl Updater {
    pub fn new(data_dir: PathBuf, board: &'static str, section: UpdateSection) -> Self {
        Self {
            data_dir,
            board,
            section,
            supervised: std::env::var_os(super::HEALTH_FILE_VAR).is_some(),
            running: None,
        }
    }

    /// Starts fetching and installing `fetch` for command `id`; why not, when it cannot start.
    pub fn start(&mut self, id: String, fetch: Fetch) -> Result<(), String> {
        if let Some((running, _)) = &self.running {
            return Err(format!(
                "an update is already under way (command {running})"
            ));
        }
        if !self.supervised {
            return Err(
                "not running under `hashwarden-fw supervise`: an installed image would never be started"
                    .into(),
            );
        }
        info!(%id, url = %fetch.url, version = %fetch.expected.version, "update: fetching");
        let (data_dir, board, section) = (self.data_dir.clone(), self.board, self.section.clone());
        let task = tokio::task::spawn_blocking(move || {
            let outcome = download_and_install(&fetch, &data_dir, board, &section);
            match &outcome {
                Ok(note) => info!(note, "update: installed"),
                Err(reason) => warn!(reason, "update: refused"),
            }
            outcome
        });
        self.running = Some((id, task));
        Ok(())
    }

    /// Resolves when the update under way ends, with its command's id and how it went; never
    /// while none is. Safe to drop unfinished (the update goes on).
    pub async fn finished(&mut self) -> (String, Outcome) {
        let outcome = match &mut self.running {
            Some((_, task)) => task
                .await
                .unwrap_or_else(|e| Err(format!("the update task failed: {e}"))),
            None => std::future::pending().await,
        };
        let id = self.running.take().map(|(id, _)| id).unwrap_or_default();
        (id, outcome)
    }

    /// The update that has ended but not yet been taken, if any: a daemon told to stop looks
    /// here, since the supervisor stops it as soon as an install is on trial, and the install's
    /// ack must still go out.
    pub async fn ended(&mut self) -> Option<(String, Outcome)> {
        match &self.running {
            Some((_, task)) if task.is_finished() => Some(self.finished().await),
            _ => None,
        }
    }
}

fn download_and_install(
    fetch: &Fetch,
    data_dir: &std::path::Path,
    board: &str,
    section: &UpdateSection,
) -> Outcome {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .build();
    let response = agent.get(&fetch.url).call().map_err(|e| match e {
        ureq::Error::Status(code, response) => {
            format!("{}: HTTP {code} {}", fetch.url, response.status_text())
        }
        other => format!("{}: {other}", fetch.url),
    })?;
    // A server that keeps sending is cut off past the largest image this board takes; the
    // image check then finds it over size or trailing.
    let body = response
        .into_reader()
        .take(section.max_size.saturating_add(HEADER_ALLOWANCE));
    let (slot, manifest) = install_from(
        BufReader::new(body),
        data_dir,
        board,
        section,
        Some(&fetch.expected),
    )?;
    Ok(format!(
        "installed {} into slot {slot:?}, on trial: the supervisor restarts into it",
        manifest.version
    ))
}
