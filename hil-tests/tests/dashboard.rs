//! The fleet dashboard in a real browser (issue #8): headless Chromium (Debian's, installed by
//! `.ci/run`) loads the agent's page while two `hashwarden-fw --sim` miners mine on mosquitto;
//! the page shows the fleet from the agent's document and keeps it current over server-sent
//! events, and a curtailment shows in it within seconds of the miner's own telemetry.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::Process;
use testbed::site::{
    Bench, agent, agent_config, efficiency, market, measured_state, miner_config, unix_now,
};

const SITE: &str = "tx-dash";
const SOON: Duration = Duration::from_secs(45);

fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium on the PATH (apt-get install -y chromium; .ci/run installs it)")
}

/// The page as Chromium renders it once loaded: its DOM, scripts run. (Not with a virtual-time
/// budget: the page's open event stream keeps the network busy, and that budget never runs out.)
fn render(port: u16) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--timeout=5000",
            "--dump-dom",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `data-mode` of `miner`'s row in `dom`.
fn row_mode(dom: &str, miner: &str) -> Option<String> {
    let at = dom.find(&format!("data-miner=\"{miner}\""))?;
    let row = &dom[at..dom[at..].find('>').map_or(dom.len(), |end| at + end)];
    let mode = row.split("data-mode=\"").nth(1)?;
    Some(mode[..mode.find('"')?].to_string())
}

/// The page's live feed (`/events`), read as the browser's EventSource reads it.
struct Events(BufReader<TcpStream>);

impl Events {
    fn open(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("writes");
        Self(BufReader::new(stream))
    }

    /// The next document pushed (chunk sizes and keep-alive comments passed over).
    fn next(&mut self) -> serde_json::Value {
        loop {
            let mut line = String::new();
            let read = self.0.read_line(&mut line).expect("the stream stays open");
            assert!(read > 0, "the event stream ended");
            if let Some(data) = line.trim_end().strip_prefix("data: ")
                && let Ok(document) = serde_json::from_str(data)
            {
                return document;
            }
        }
    }
}

/// `miner`'s mode in a dashboard document.
fn mode_in(document: &serde_json::Value, miner: &str) -> Option<String> {
    document["fleet"]
        .as_array()?
        .iter()
        .find(|row| row["miner"] == miner)
        .and_then(|row| row["mode"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_and_a_curtailment_within_seconds() {
    let Bench {
        dir,
        broker,
        key,
        public_key,
        mut watcher,
    } = Bench::start("dashboard", SITE).await;
    let port = broker.port;
    let miners: Vec<Process> = [("efficient", 1300, 250.0), ("hot", 1500, 425.0)]
        .into_iter()
        .map(|(name, mv, mhz)| {
            let config = miner_config(&dir, SITE, name, port, &public_key, mv, mhz);
            Process::sim_miner(&config, dir.join(format!("{name}.log")))
        })
        .collect();
    let e_efficient = efficiency(&measured_state(&mut watcher, "efficient", SOON).await);
    let e_hot = efficiency(&measured_state(&mut watcher, "hot", SOON).await);
    let head = format!(
        "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
         [policy]\nmode = \"threshold\"\nband = 0.05\nmin_on_s = 2\nmin_off_s = 2\n\
         restore_cooldown_s = 2\nbatch_size = 10\nbatch_interval_s = 1\n"
    );
    let config = agent_config(&dir, &head, port, &key);
    let agent = agent(&dir, &config.path);
    let market_topic = format!("hashwarden/v1/{SITE}/market");
    let breakeven = |e: f64| e * 24.0 * 0.06;
    watcher
        .publish(
            &market_topic,
            &market(SITE, breakeven(e_hot) * 1.5, unix_now()),
            true,
        )
        .await;

    // Both miners in the table, mining, the hashprice on the page.
    let deadline = Instant::now() + SOON;
    let dom = loop {
        let dom = render(config.http_port);
        if row_mode(&dom, "hot").as_deref() == Some("mining")
            && row_mode(&dom, "efficient").as_deref() == Some("mining")
        {
            break dom;
        }
        assert!(Instant::now() < deadline, "the fleet never showed:\n{dom}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(dom.contains(SITE), "{dom}");
    assert!(dom.contains("<canvas id=\"market\""), "{dom}");
    // The feed an open page listens on: the current document at once, then each new one.
    let mut events = Events::open(config.http_port);
    assert_eq!(mode_in(&events.next(), "hot").as_deref(), Some("mining"));

    // A price between the two breakevens: the hot one sleeps — its telemetry, then the feed and
    // the page.
    let between = (breakeven(e_efficient) * breakeven(e_hot)).sqrt();
    watcher
        .publish(&market_topic, &market(SITE, between, unix_now() + 1), true)
        .await;
    watcher
        .wait_for("/hot/telemetry", SOON, |s| s.json()["mode"] == "sleeping")
        .await;
    let asleep = Instant::now();
    let pushed = tokio::task::spawn_blocking(move || {
        while mode_in(&events.next(), "hot").as_deref() != Some("sleeping") {}
    });
    tokio::time::timeout(Duration::from_secs(10), pushed)
        .await
        .expect("the feed pushed the curtailment within seconds")
        .expect("joins");
    let dom = loop {
        let dom = render(config.http_port);
        if row_mode(&dom, "hot").as_deref() == Some("sleeping") {
            break dom;
        }
        assert!(
            asleep.elapsed() < Duration::from_secs(15),
            "the curtailment did not show within seconds:\n{dom}"
        );
    };
    assert_eq!(row_mode(&dom, "efficient").as_deref(), Some("mining"));
    assert!(dom.contains("under water"), "the reason is shown: {dom}");
    let (status, _) = agent.terminate();
    assert!(status.success());
    drop(miners);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
