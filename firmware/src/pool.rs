//! The pool connection: a tokio task around the sans-IO `stratum::Session`. It hands the mining
//! loop fresh work (on every new job and every `WorkPlan::interval`, one item per chain) and
//! submits the shares it gets back; pools are tried in order with backoff
//! (`stratum::Failover`). The mining loop never blocks on the network: work and shares cross
//! over channels.

use std::time::Duration;

use stratum::{Accounting, Event, Failover, PoolWork, Session};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::PoolSection;

/// A connection attempt that takes longer than this counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connected but not authorized within this long: the pool is not serving us.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Pools send a job at least every minute or so; nothing at all for this long means a dead link.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(180);
/// Failed attempts on one pool before the next is tried.
const FAILURES_BEFORE_FAILOVER: u32 = 3;

/// A share found on pool work, to be sent as `mining.submit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
    pub version: u32,
}

/// The mining loop's end of the pool task.
#[derive(Debug)]
pub struct PoolLink {
    pub work: mpsc::Receiver<PoolWork>,
    pub shares: mpsc::UnboundedSender<Submission>,
    pub accounting: watch::Receiver<Accounting>,
    /// Which pool (index into the configured list) is authorized and mining, if any.
    pub active: watch::Receiver<Option<usize>>,
    /// (url, user) of each configured pool, for the APIs.
    pub pools: Vec<(String, String)>,
    task: tokio::task::JoinHandle<()>,
}

impl PoolLink {
    /// Sends the shares still queued, waiting at most `grace`, and returns the pool's verdicts so
    /// far. The work channel stays open until then so the task does not stop early.
    pub async fn finish(self, grace: Duration) -> Accounting {
        let PoolLink {
            work,
            shares,
            accounting,
            task,
            ..
        } = self;
        drop(shares);
        if tokio::time::timeout(grace, task).await.is_err() {
            warn!("the pool did not take the last shares in time");
        }
        drop(work);
        *accounting.borrow()
    }
}

/// How the pool task hands out work.
#[derive(Debug, Clone, Copy)]
pub struct WorkPlan {
    /// Fresh extranonce2 this often even without a new job, so the chips never run dry.
    pub interval: Duration,
    /// Work items per event: one per chain, each with its own extranonce2, so no two chains
    /// hash the same header.
    pub variants: usize,
}

/// Starts the pool task; it runs until the link is dropped.
pub fn spawn(pools: Vec<PoolSection>, plan: WorkPlan) -> PoolLink {
    let plan = WorkPlan {
        variants: plan.variants.max(1),
        ..plan
    };
    let (work_tx, work) = mpsc::channel(4 * plan.variants);
    let (shares, shares_rx) = mpsc::unbounded_channel();
    let (accounting_tx, accounting) = watch::channel(Accounting::default());
    let (active_tx, active) = watch::channel(None);
    let rows = pools
        .iter()
        .map(|p| (p.url.clone(), p.user.clone()))
        .collect();
    let task = tokio::spawn(run(
        pools,
        plan,
        work_tx,
        shares_rx,
        accounting_tx,
        active_tx,
    ));
    PoolLink {
        work,
        shares,
        accounting,
        active,
        pools: rows,
        task,
    }
}

/// What a connection reports as it goes.
enum Progress {
    Authorized,
    Verdicts(Accounting),
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum Disconnect {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(#[from] stratum::PoolError),
    #[error("connect or handshake timed out")]
    Timeout,
    #[error("the pool went silent")]
    Silent,
    #[error("the pool closed the connection")]
    Closed,
    #[error("{0:?} is not stratum+tcp://HOST:PORT")]
    BadUrl(String),
    /// The mining loop went away: not a pool failure, the daemon is stopping.
    #[error("stopping")]
    Stopping,
}

async fn run(
    pools: Vec<PoolSection>,
    plan: WorkPlan,
    work: mpsc::Sender<PoolWork>,
    mut shares: mpsc::UnboundedReceiver<Submission>,
    accounting: watch::Sender<Accounting>,
    active: watch::Sender<Option<usize>>,
) {
    let mut failover = Failover::new(pools.len(), FAILURES_BEFORE_FAILOVER);
    // Totals survive reconnects: the operator wants the day's shares, not the connection's.
    let mut carried = Accounting::default();
    loop {
        let Some(pool) = pools.get(failover.current()) else {
            return;
        };
        let mut session = Session::new(&pool.user, &pool.password);
        let index = failover.current();
        let publish = |progress: Progress| match progress {
            Progress::Authorized => {
                active.send_replace(Some(index));
            }
            Progress::Verdicts(now) => {
                accounting.send_replace(sum(carried, now));
            }
        };
        let result = connection(
            pool,
            &mut session,
            &mut failover,
            plan,
            &work,
            &mut shares,
            publish,
        )
        .await;
        active.send_replace(None);
        carried = sum(carried, session.accounting());
        accounting.send_replace(carried);
        match result {
            Err(Disconnect::Stopping) => return,
            Err(e) => {
                let retry = failover.failed();
                warn!(url = pool.url, error = %e, retry_in_ms = retry.after_ms, "pool connection lost");
                let backoff = tokio::time::sleep(Duration::from_millis(retry.after_ms));
                tokio::pin!(backoff);
                loop {
                    tokio::select! {
                        () = &mut backoff => break,
                        share = shares.recv() => {
                            if share.is_none() {
                                return;
                            }
                            // Its job belonged to the lost connection; no pool will take it.
                            carried.stale += 1;
                            accounting.send_replace(carried);
                        }
                    }
                }
            }
            Ok(()) => return,
        }
        if work.is_closed() {
            return;
        }
    }
}

fn sum(a: Accounting, b: Accounting) -> Accounting {
    Accounting {
        accepted: a.accepted + b.accepted,
        rejected: a.rejected + b.rejected,
        stale: a.stale + b.stale,
    }
}

/// Reads lines on its own task so that a partly read line is never lost to a `select!`.
fn spawn_line_reader(
    read: tokio::net::tcp::OwnedReadHalf,
) -> mpsc::Receiver<Result<String, Disconnect>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut reader = BufReader::new(read);
        loop {
            let mut line = Vec::new();
            // One byte over the limit tells an oversized line from one that just fits.
            let limit = stratum::session::MAX_LINE as u64 + 1;
            let result = match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
                Ok(0) => Err(Disconnect::Closed),
                Ok(n) if n as u64 >= limit => Err(Disconnect::Protocol(
                    stratum::PoolError::Malformed("line longer than the limit".into()),
                )),
                Ok(_) => Ok(String::from_utf8_lossy(&line).trim_end().to_string()),
                Err(e) => Err(Disconnect::Io(e)),
            };
            let end = result.is_err();
            if tx.send(result).await.is_err() || end {
                return;
            }
        }
    });
    rx
}

async fn connection(
    pool: &PoolSection,
    session: &mut Session,
    failover: &mut Failover,
    plan: WorkPlan,
    work: &mpsc::Sender<PoolWork>,
    shares: &mut mpsc::UnboundedReceiver<Submission>,
    publish: impl Fn(Progress),
) -> Result<(), Disconnect> {
    let address = pool
        .address()
        .ok_or_else(|| Disconnect::BadUrl(pool.url.clone()))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| Disconnect::Timeout)??;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut lines = spawn_line_reader(read);
    for line in session.start() {
        write.write_all(format!("{line}\n").as_bytes()).await?;
    }
    let mut refresh = tokio::time::interval(plan.interval);
    refresh.tick().await;
    let mut announced = false;
    // A pool that never finishes the handshake, or goes quiet, is as good as gone: fail over.
    let mut deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                return Err(if announced { Disconnect::Silent } else { Disconnect::Timeout });
            }
            line = lines.recv() => {
                let line = line.ok_or(Disconnect::Closed)??;
                if announced {
                    deadline = tokio::time::Instant::now() + SILENCE_TIMEOUT;
                }
                if line.is_empty() {
                    continue;
                }
                for event in session.handle_line(&line)? {
                    match event {
                        Event::Authorized => {
                            failover.connected();
                            publish(Progress::Authorized);
                            deadline = tokio::time::Instant::now() + SILENCE_TIMEOUT;
                            if !announced {
                                info!(url = pool.url, user = pool.user, "pool authorized");
                                announced = true;
                            }
                        }
                        Event::Work { job_id, clean } => {
                            tracing::debug!(job_id, clean, "new job");
                            send_work(session, work, plan.variants)?;
                            refresh.reset();
                        }
                        Event::ShareResult { job_id, accepted, reason } => {
                            if !accepted {
                                warn!(job_id, reason = reason.as_deref().unwrap_or(""), "share rejected");
                            }
                            publish(Progress::Verdicts(session.accounting()));
                        }
                        Event::Difficulty(_) | Event::VersionMask(_) => {}
                    }
                }
            }
            share = shares.recv() => {
                let share = share.ok_or(Disconnect::Stopping)?;
                match session.submit(&share.job_id, &share.extranonce2, share.ntime, share.nonce, share.version) {
                    Some(line) => write.write_all(format!("{line}\n").as_bytes()).await?,
                    None => publish(Progress::Verdicts(session.accounting())),
                }
            }
            _ = refresh.tick() => send_work(session, work, plan.variants)?,
        }
    }
}

/// Never waits on the mining loop: pool I/O (share verdicts, new jobs) must not stall behind it.
/// If the loop is that far behind, the newest work waits for the next refresh.
fn send_work(
    session: &mut Session,
    work: &mpsc::Sender<PoolWork>,
    variants: usize,
) -> Result<(), Disconnect> {
    for _ in 0..variants {
        let Some(next) = session.next_work() else {
            return Ok(());
        };
        match work.try_send(next) {
            Ok(()) => {}
            // At a BM1397 chain's millisecond cadence a skipped refresh is routine; the next one
            // comes soon.
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("the mining loop is behind; work skipped until the next refresh");
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Disconnect::Stopping),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pool_that_never_answers_is_dropped_after_the_handshake_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let pool = PoolSection {
            url: format!("stratum+tcp://127.0.0.1:{port}"),
            user: "u".into(),
            password: "x".into(),
        };
        let link = spawn(
            vec![pool],
            WorkPlan {
                interval: Duration::from_secs(5),
                variants: 1,
            },
        );
        // Held open and never answered, so only the timeout can end the connection.
        let (_silent, _) = listener.accept().await.expect("first connection");
        let first = tokio::time::Instant::now();
        let retried = tokio::time::timeout(Duration::from_secs(120), listener.accept()).await;
        assert!(retried.is_ok(), "the daemon never gave up on a silent pool");
        let waited = first.elapsed();
        assert!(
            waited >= HANDSHAKE_TIMEOUT && waited < HANDSHAKE_TIMEOUT + Duration::from_secs(5),
            "{waited:?}"
        );
        assert_eq!(*link.active.borrow(), None);
    }
}
