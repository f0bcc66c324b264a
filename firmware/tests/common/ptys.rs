//! Simulated chains behind real PTYs (the server `chipsim serve` runs), for the daemon's
//! hardware-in-the-loop tests and its benchmark.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bm13xx::ChipModel;
use chipsim::pty::Pty;
use chipsim::{ChainConfig, ChainSim, SimLink};

/// Simulated chains behind PTYs (one per entry, with that many chips), served on their own
/// runtime until `stop`; then the simulators' (nonces sent, chips) come back.
pub struct Chains {
    pub paths: Vec<std::path::PathBuf>,
    stop: tokio::sync::oneshot::Sender<()>,
    truth: mpsc::Receiver<Vec<(u64, usize)>>,
    server: thread::JoinHandle<()>,
}

impl Chains {
    /// Chains in real time.
    pub fn serve(chips: &[u32]) -> Self {
        Self::serve_at(chips, 1.0, None)
    }

    /// As `serve`, and chain `unplug.0`'s PTY disappears after `unplug.1` (a hashboard cable
    /// pulled while mining).
    pub fn serve_and_unplug(chips: &[u32], unplug: (usize, Duration)) -> Self {
        Self::serve_at(chips, 1.0, Some(unplug))
    }

    /// Chains whose simulated time runs `speed` times faster than the wall clock.
    pub fn serve_at(chips: &[u32], speed: f64, unplug: Option<(usize, Duration)>) -> Self {
        let chips = chips.to_vec();
        let (paths_tx, paths_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (truth_tx, truth) = mpsc::channel();
        let server = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut probes = Vec::new();
                let mut served = Vec::new();
                let mut paths = Vec::new();
                for (chain, &count) in chips.iter().enumerate() {
                    let mut config = ChainConfig::new(ChipModel::Bm1397, count, 5 + chain as u64);
                    config.share_floor_log2 = 26;
                    let (uart, control) = SimLink::open(ChainSim::new(config).expect("valid"));
                    let pty = Pty::open().expect("a PTY");
                    paths.push(pty.path.clone());
                    probes.push(control.clone());
                    let serving = pty.serve(uart, control, speed);
                    served.push(match unplug {
                        // The PTY (and the simulator behind it) is dropped when time is up.
                        Some((unplugged, after)) if unplugged == chain => {
                            tokio::spawn(async move {
                                let _ = tokio::time::timeout(after, serving).await;
                                Ok(())
                            })
                        }
                        _ => tokio::spawn(serving),
                    });
                }
                paths_tx.send(paths).expect("sends");
                let _ = stop_rx.await;
                for task in served {
                    task.abort();
                }
                let truth: Vec<(u64, usize)> = probes
                    .iter()
                    .map(|p| p.with_sim(|s| (s.stats().nonces_sent, s.chips().len())))
                    .collect();
                truth_tx.send(truth).expect("sends");
            });
        });
        Chains {
            paths: paths_rx.recv().expect("PTY paths"),
            stop,
            truth,
            server,
        }
    }

    /// The `[[chains]]` sections that point the daemon at these PTYs.
    pub fn config_sections(&self) -> String {
        self.paths
            .iter()
            .map(|path| {
                format!(
                    "[[chains]]\nserial = \"{}\"\nsimulated_share_floor_log2 = 26\n",
                    path.display()
                )
            })
            .collect()
    }

    /// Stops the chains; each one's (nonces sent, chips).
    pub fn finish(self) -> Vec<(u64, usize)> {
        let _ = self.stop.send(());
        let truth = self.truth.recv().expect("simulator stats");
        self.server.join().expect("server thread");
        truth
    }
}
