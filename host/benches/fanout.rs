//! A curtailment fanned out to 10,000 miners (issues #6 and #8: p99 < 2 s to ack), on this
//! package's release build of the agent: `cargo bench -p hashwarden --bench fanout` (needs
//! `mosquitto` on the PATH); `HASHWARDEN_BENCH_BROKER=embedded` runs the same through the agent's
//! embedded broker. The harness is `testbed::fanout`, which the suite's
//! `hil-tests/tests/fanout.rs` runs on the test build.

use testbed::fanout::{Via, run};

const MINERS: usize = 10_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let via = if std::env::var("HASHWARDEN_BENCH_BROKER").as_deref() == Ok("embedded") {
        Via::Embedded
    } else {
        Via::Mosquitto
    };
    let agent = std::path::PathBuf::from(env!("CARGO_BIN_EXE_hashwarden"));
    let report = run(&agent, MINERS, via).await;
    println!("{}", report.table());
    println!("agent summary: {}", report.summary);
}
