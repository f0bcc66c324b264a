//! `hashwarden flash`: checks an image against the release key, queues its rollout for the
//! running agent (which alone signs and numbers commands to the miners), then follows it in the
//! store with a progress bar and ends with a table of every miner's outcome. Leaving early stops
//! nothing: the agent carries the rollout on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fleet_proto::image;
use serde::Serialize;

use crate::rollout::{Request, Rollout, Staging, Step};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct FlashArgs {
    /// The miners; or `--all` for every miner the agent knows.
    pub miners: Vec<String>,
    #[arg(long)]
    pub all: bool,
    /// The site configuration of the agent that carries the rollout out.
    #[arg(long)]
    pub config: PathBuf,
    /// The signed image (`hashwarden-fw image build`).
    #[arg(long)]
    pub image: PathBuf,
    /// The release public key the image must be signed with: 64 hex digits, or a file.
    #[arg(long)]
    pub pubkey: String,
    #[arg(long, default_value = "release")]
    pub key_id: String,
    /// Miners in the first wave, which must all succeed before any other is touched.
    #[arg(long, default_value_t = 1)]
    pub canary: usize,
    /// Miners per later wave.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Miners updating (down) at once, at most.
    #[arg(long, default_value_t = 10)]
    pub max_offline: usize,
    /// No new miner is started once this share of the finished ones has failed.
    #[arg(long, default_value_t = 0.1)]
    pub max_failure_rate: f64,
    /// From a miner's command to its new version reporting: `10m`, `600s`, …
    #[arg(long, default_value = "10m")]
    pub deadline: String,
    /// How long the new version must stay up before a miner counts as updated.
    #[arg(long, default_value = "60s")]
    pub settle: String,
    /// Queue it and return; the agent carries it out (`hashwarden flash` follows nothing).
    #[arg(long)]
    pub detach: bool,
    /// How long to follow it before giving up watching (the rollout goes on).
    #[arg(long, default_value = "2h")]
    pub timeout: String,
    /// The outcome as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hashwarden flash`.
pub fn run(args: &FlashArgs) -> Result<(), String> {
    let staging = staging(args)?;
    let timeout =
        cli_common::parse_duration(&args.timeout).map_err(|e| format!("--timeout {e}"))?;
    let (key_id, public_key, manifest) = verify(args)?;
    let store = crate::site::SiteConfig::load(&args.config)
        .map_err(|e| e.to_string())?
        .agent
        .ok_or_else(|| {
            format!(
                "{}: no [agent] section (and so no store)",
                args.config.display()
            )
        })
        .and_then(|agent| Store::open(&agent.store).map_err(|e| e.to_string()))?;
    let miners = crate::follow::chosen_miners(&store, &args.miners, args.all)?;
    if miners.is_empty() {
        return Err("the agent knows no miners yet".into());
    }
    let image_path =
        std::fs::canonicalize(&args.image).map_err(|e| format!("{}: {e}", args.image.display()))?;
    let version = manifest.version;
    let request = Request {
        image_path,
        manifest,
        key_id,
        public_key,
        miners: miners.clone(),
        staging,
    };
    let id = store
        .request_rollout(&request, crate::agent::unix_now())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "rollout {id}: {version} to {} miner(s), canary {}, then waves of {}, at most {} down at once",
        miners.len(),
        staging.canary.max(1),
        staging.batch.max(1),
        staging.max_offline.max(1)
    );
    if args.detach {
        return Ok(());
    }
    follow(
        &store,
        id,
        miners.len(),
        Duration::from_secs(timeout),
        args.json,
    )
}

fn staging(args: &FlashArgs) -> Result<Staging, String> {
    if !(0.0..=1.0).contains(&args.max_failure_rate) {
        return Err(format!(
            "--max-failure-rate {}: a share from 0 to 1",
            args.max_failure_rate
        ));
    }
    if args.canary == 0 || args.batch == 0 || args.max_offline == 0 {
        return Err("--canary, --batch and --max-offline take at least 1".into());
    }
    Ok(Staging {
        canary: args.canary,
        batch: args.batch,
        max_offline: args.max_offline,
        max_failure_rate: args.max_failure_rate,
        deadline_s: cli_common::parse_duration(&args.deadline)
            .map_err(|e| format!("--deadline {e}"))?,
        settle_s: cli_common::parse_duration(&args.settle).map_err(|e| format!("--settle {e}"))?,
        ..Staging::default()
    })
}

/// The image checked as a board would, for no board in particular: the key id, the key and its
/// manifest.
fn verify(args: &FlashArgs) -> Result<(String, String, image::Manifest), String> {
    let public_key = match std::fs::read_to_string(&args.pubkey) {
        Ok(text) => text.trim().to_string(),
        Err(_) => args.pubkey.trim().to_string(),
    };
    let reader = std::fs::File::open(&args.image)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("{}: {e}", args.image.display()))?;
    let manifest = crate::rollout::check_image(reader, &args.key_id, &public_key)
        .map_err(|e| format!("{}: {e}", args.image.display()))?;
    Ok((args.key_id.clone(), public_key, manifest))
}

/// Follows rollout `id` in the store until it finishes (or `timeout`), then prints the table.
fn follow(
    store: &Store,
    id: i64,
    total: usize,
    timeout: Duration,
    json: bool,
) -> Result<(), String> {
    let bar = crate::follow::progress_bar(total as u64, "waiting for the agent")?;
    let deadline = Instant::now() + timeout;
    let mut last: Option<Rollout> = None;
    let mut halted_shown = false;
    loop {
        let stored = store
            .rollout(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("rollout {id} is gone from the store"))?;
        if let Some(progress) = &stored.progress {
            let tally = progress.tally();
            bar.set_position(tally.done() as u64);
            bar.set_message(format!(
                "{}: {} updated, {} failed, {} updating",
                progress.image.version, tally.updated, tally.failed, tally.in_flight
            ));
            if let (Some(reason), false) = (&progress.halted, halted_shown) {
                bar.println(format!("halted: {reason}"));
                halted_shown = true;
            }
        }
        last = stored.progress.or(last);
        if stored.finished || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bar.finish_and_clear();
    let Some(rollout) = last else {
        return Err(format!(
            "the agent did not take rollout {id} up within {timeout:?}: is `hashwarden run` running on this store?"
        ));
    };
    let report = Report::of(id, &rollout);
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.table());
    }
    report.verdict()
}

/// What a rollout came to, for people (a table) and scripts (JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub id: i64,
    pub version: String,
    pub halted: Option<String>,
    pub finished: bool,
    pub tally: crate::rollout::Tally,
    pub miners: Vec<MinerOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinerOutcome {
    pub miner: String,
    /// `updated`, `already`, `skipped`, `failed`, `updating` or `not_started`.
    pub outcome: &'static str,
    pub detail: String,
}

impl Report {
    pub fn of(id: i64, rollout: &Rollout) -> Self {
        let miners = rollout
            .targets
            .iter()
            .map(|t| {
                let outcome = match &t.step {
                    Step::Updated { .. } => "updated",
                    Step::AlreadyThere => "already",
                    Step::Skipped { .. } => "skipped",
                    Step::Failed { .. } => "failed",
                    Step::Waiting => "not_started",
                    _ => "updating",
                };
                MinerOutcome {
                    miner: t.miner.clone(),
                    outcome,
                    detail: t.step.to_string(),
                }
            })
            .collect();
        Self {
            id,
            version: rollout.image.version.to_string(),
            halted: rollout.halted.clone(),
            finished: rollout.finished(),
            tally: rollout.tally(),
            miners,
        }
    }

    pub fn table(&self) -> String {
        let mut out = format!("{:<28}  {:<12}  detail\n", "miner", "outcome");
        for m in &self.miners {
            out.push_str(&format!(
                "{:<28}  {:<12}  {}\n",
                m.miner, m.outcome, m.detail
            ));
        }
        let t = &self.tally;
        out.push_str(&format!(
            "rollout {} of {}: {} updated, {} already there, {} skipped, {} failed, {} not started{}\n",
            self.id,
            self.version,
            t.updated,
            t.already,
            t.skipped,
            t.failed,
            t.waiting,
            self.halted
                .as_ref()
                .map_or(String::new(), |h| format!(" — halted: {h}"))
        ));
        out
    }

    /// Success only when every miner ended on the new version or had no need of it.
    pub fn verdict(&self) -> Result<(), String> {
        let t = &self.tally;
        if !self.finished {
            return Err(format!(
                "rollout {} still under way ({} updating, {} waiting); the agent carries on",
                self.id, t.in_flight, t.waiting
            ));
        }
        if t.failed > 0 || self.halted.is_some() || t.waiting > 0 {
            return Err(format!(
                "rollout {}: {} failed, {} not started",
                self.id, t.failed, t.waiting
            ));
        }
        Ok(())
    }
}
