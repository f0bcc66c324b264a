//! The site's inputs over MQTT are taken only when signed by a feed key the site trusts (#16,
//! finding 1): the anonymous market, power and grid messages that once curtailed a site change
//! nothing, on mosquitto and on the agent's embedded broker; `hashwarden feed` signs and
//! publishes readings the agent takes; a captured reading replayed later is refused.

use std::time::{Duration, Instant};

use testbed::site::LoneAgent;
use testbed::{Via, Watcher, binary, scratch, try_http_get};

const SITE: &str = "feeds";
const SOON: Duration = Duration::from_secs(60);

/// A gauge or counter on the agent's `/metrics`, if it is there.
fn metric(port: u16, name: &str) -> Option<f64> {
    try_http_get(port, "/metrics")?
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Waits until `/metrics` shows `name` at `want` (within a cent), or fails saying what it shows.
async fn wait_metric(port: u16, name: &str, want: Option<f64>) {
    let deadline = Instant::now() + SOON;
    loop {
        let now = metric(port, name);
        let close = match (now, want) {
            (Some(a), Some(b)) => (a - b).abs() < 0.01,
            (None, None) => true,
            _ => false,
        };
        if close {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {now:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn feed(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("hashwarden"))
        .arg("feed")
        .args(args)
        .output()
        .expect("runs")
}

async fn only_signed_readings_move_the_site(via: Via) {
    // The operator's feed: a key made by `hashwarden keys init`, trusted beside the suites' own.
    let keys = scratch(&format!("feeds-keys-{via:?}"));
    let feed_key = keys.join("feed.key");
    let feed_public = testbed::agent_key(&feed_key, "prices");
    let site = LoneAgent::start(
        "feeds",
        SITE,
        via,
        &format!(
            "[market]\nhashprice = 40.0\n\
             [[feeds.trusted_keys]]\nid = \"prices\"\npublic_key = \"{feed_public}\"\n"
        ),
    )
    .await;
    let (port, metrics_port) = (site.port, site.metrics_port);
    let agent = &site.agent;
    wait_metric(
        metrics_port,
        "hashwarden_hashprice_usd_per_ph_day",
        Some(40.0),
    )
    .await;

    // The attack: one anonymous client, retained readings on all three topics.
    let mut attacker = Watcher::connect(port, "attacker", &format!("hashwarden/v1/{SITE}/#")).await;
    attacker.subscribed().await;
    let now = testbed::site::unix_now();
    let topic = |kind: &str| format!("hashwarden/v1/{SITE}/{kind}");
    for (kind, body) in [
        (
            "market",
            format!("{{\"v\":1,\"at\":{now},\"hashprice_usd_per_ph_day\":27.0}}"),
        ),
        (
            "power",
            format!("{{\"v\":1,\"at\":{now},\"usd_per_kwh\":9.99}}"),
        ),
        (
            "grid",
            format!(
                "{{\"v\":1,\"at\":{now},\"cap_kw\":0,\"until\":{}}}",
                u64::MAX
            ),
        ),
    ] {
        attacker.publish(&topic(kind), &body, true).await;
    }
    wait_metric(metrics_port, "hashwarden_messages_refused_total", Some(3.0)).await;
    let log = agent.log_text();
    assert!(log.contains("unsigned"), "{log}");
    // Nothing moved: the configured market, the tariff, no cap.
    assert_eq!(
        metric(metrics_port, "hashwarden_hashprice_usd_per_ph_day"),
        Some(40.0)
    );
    assert_eq!(
        metric(metrics_port, "hashwarden_power_price_usd_per_kwh"),
        Some(0.06)
    );
    assert_eq!(metric(metrics_port, "hashwarden_site_cap_watts"), None);

    // The operator's feed, through the command line.
    let broker_url = format!("mqtt://127.0.0.1:{port}");
    // `hashwarden feed READING… --key KEY --key-id prices --site … --broker …`.
    let signed_by = |key: &std::path::Path, reading: &[&str]| {
        let key = key.display().to_string();
        let mut args: Vec<&str> = reading.to_vec();
        args.extend(["--key", &key, "--key-id", "prices", "--site", SITE]);
        args.extend(["--broker", &broker_url]);
        feed(&args)
    };
    let run = |reading: &[&str]| signed_by(&feed_key, reading);
    let published = run(&["market", "--hashprice", "31.5"]);
    assert!(published.status.success(), "{published:?}");
    assert!(
        String::from_utf8_lossy(&published.stdout).contains("market reading published"),
        "{published:?}"
    );
    wait_metric(
        metrics_port,
        "hashwarden_hashprice_usd_per_ph_day",
        Some(31.5),
    )
    .await;
    let capped = run(&["grid", "--cap-kw", "5", "--for", "1h"]);
    assert!(capped.status.success(), "{capped:?}");
    wait_metric(metrics_port, "hashwarden_site_cap_watts", Some(5_000.0)).await;

    // A reading captured off the wire (here: printed, not published), overtaken by a newer one,
    // then replayed: refused, and the newer one stands.
    let captured = run(&["market", "--hashprice", "29", "--print"]);
    assert!(captured.status.success(), "{captured:?}");
    let captured = String::from_utf8_lossy(&captured.stdout).trim().to_string();
    let newer = run(&["market", "--hashprice", "33"]);
    assert!(newer.status.success(), "{newer:?}");
    wait_metric(
        metrics_port,
        "hashwarden_hashprice_usd_per_ph_day",
        Some(33.0),
    )
    .await;
    attacker.publish(&topic("market"), &captured, true).await;
    wait_metric(metrics_port, "hashwarden_messages_refused_total", Some(4.0)).await;
    assert_eq!(
        metric(metrics_port, "hashwarden_hashprice_usd_per_ph_day"),
        Some(33.0)
    );
    assert!(
        agent.log_text().contains("replayed"),
        "{}",
        agent.log_text()
    );

    // A feed the site does not trust is told so by nobody, and moves nothing.
    let stranger_key = keys.join("stranger.key");
    testbed::agent_key(&stranger_key, "prices");
    let stranger = signed_by(&stranger_key, &["market", "--hashprice", "5"]);
    assert!(stranger.status.success(), "{stranger:?}");
    wait_metric(metrics_port, "hashwarden_messages_refused_total", Some(5.0)).await;
    assert_eq!(
        metric(metrics_port, "hashwarden_hashprice_usd_per_ph_day"),
        Some(33.0)
    );

    site.finish();
    let _ = std::fs::remove_dir_all(&keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_readings_move_a_site_on_mosquitto() {
    only_signed_readings_move_the_site(Via::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_readings_move_a_site_on_the_embedded_broker() {
    only_signed_readings_move_the_site(Via::Embedded).await;
}

#[test]
fn a_feed_without_its_key_or_with_a_bad_reading_says_so() {
    for (args, says) in [
        (vec!["market", "--hashprice", "30", "--site", SITE], "--key"),
        (
            vec![
                "grid",
                "--key",
                "/nonexistent",
                "--site",
                SITE,
                "--cap-kw",
                "1",
            ],
            "/nonexistent",
        ),
    ] {
        let out = feed(&args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
