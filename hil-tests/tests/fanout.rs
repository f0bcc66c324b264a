//! A curtailment fanned out to 10,000 lightweight simulated miners through mosquitto (issue #8),
//! the agent being the suite's own build. The times are reported, not asserted — they depend on
//! the machine and on the build (`cargo bench -p hashwarden --bench fanout` measures a release
//! build; `docs/BENCHMARKS.md`) — but every miner must get its command, ack it and be verified.

use std::io::Write;

use testbed::binary;
use testbed::fanout::{Via, run};

const MINERS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_miners_are_curtailed_and_the_times_reported() {
    let report = run(&binary("hashwarden"), MINERS, Via::Mosquitto).await;
    // Straight to the process's stderr, past the test harness's capture: the suite's log shows
    // the table on a passing run too.
    let _ = writeln!(
        std::io::stderr(),
        "\nfan-out (this build, this machine):\n{}",
        report.table()
    );
    assert_eq!(report.command.count(), MINERS, "{}", report.table());
    assert_eq!(report.ack.count(), MINERS, "{}", report.table());
    assert_eq!(report.verified.count(), MINERS, "{}", report.table());
    assert_eq!(report.summary["failed"], 0, "{}", report.summary);
    assert_eq!(report.summary["unresponsive"], 0, "{}", report.summary);
}
