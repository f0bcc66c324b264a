//! Two agents splitting one site through a shared subscription on mosquitto: each commands
//! exactly the miners rendezvous hashing gives it (no miner gets a command twice), and when one
//! agent dies its last will hands its miners to the other, which then brings the whole site
//! back. The miners keep counting the host as present while either agent is online.

use std::time::Duration;

use hashwarden::shard::Group;
use testbed::{Broker, Process, Watcher, binary, scratch};

const SITE: &str = "tx-group";
const SOON: Duration = Duration::from_secs(60);
const AGENTS: [&str; 2] = ["agent-a", "agent-b"];

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Three miner names that the two agents split between them (not all to one).
fn split_fleet() -> Vec<String> {
    let view = {
        let mut group = Group::new(AGENTS[0]);
        group.presence(AGENTS[1], true);
        group
    };
    let candidates: Vec<String> = (1..40).map(|i| format!("m{i}")).collect();
    for window in candidates.windows(3) {
        let owned_by_a = window.iter().filter(|m| view.owns(m)).count();
        if (1..3).contains(&owned_by_a) {
            return window.to_vec();
        }
    }
    panic!("no mixed split among the candidates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_split_a_site_and_one_takes_over_when_the_other_dies() {
    let dir = scratch("group");
    let broker = Broker::start(&dir);
    let agent_bin = binary("hashwarden");
    // One key per agent: each keeps its own sequence numbers, and the miners trust both.
    let mut trusted = String::new();
    for agent in AGENTS {
        let public_key = testbed::agent_key(&dir.join(format!("{agent}.key")), agent);
        trusted.push_str(&format!(
            "[[mqtt.trusted_keys]]\nid = \"{agent}\"\npublic_key = \"{public_key}\"\n"
        ));
    }
    let mut watcher = Watcher::connect(
        broker.port,
        "test-watch",
        &format!("hashwarden/v1/{SITE}/#"),
    )
    .await;
    let fleet = split_fleet();
    let miners: Vec<Process> = fleet
        .iter()
        .map(|name| {
            let data = dir.join(format!("data-{name}"));
            std::fs::create_dir_all(&data).expect("data dir");
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[board]\nname = \"bm1397-hashboard-12\"\n[daemon]\ndata_dir = \"{}\"\n\
                     [mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nsite = \"{SITE}\"\nminer = \"{name}\"\n\
                     telemetry_interval_s = 0.5\n{trusted}",
                    data.display(),
                    broker.port
                ),
            )
            .expect("writes");
            Process::sim_miner(
                &config.display().to_string(),
                dir.join(format!("{name}.log")),
            )
        })
        .collect();
    let agents: Vec<Process> = AGENTS
        .iter()
        .map(|agent| {
            let config = dir.join(format!("{agent}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
                     [policy]\nmode = \"threshold\"\nmin_on_s = 2\nmin_off_s = 2\n\
                     restore_cooldown_s = 2\nbatch_interval_s = 1\n\
                     [agent]\nmqtt_url = \"mqtt://127.0.0.1:{}\"\nkey_file = \"{}\"\nkey_id = \"{agent}\"\nenrol = \"first-seen\"\n\
                     plan_interval_s = 0.5\nstore = \"{}\"\n\
                     [agent.share]\ngroup = \"agents\"\ninstance = \"{agent}\"\n{}",
                    broker.port,
                    dir.join(format!("{agent}.key")).display(),
                    dir.join(format!("{agent}.db")).display(),
                    testbed::site::feeds_section()
                ),
            )
            .expect("writes");
            Process::start(
                &agent_bin,
                &["run", "--config", &config.display().to_string()],
                dir.join(format!("{agent}.log")),
            )
        })
        .collect();
    for agent in AGENTS {
        watcher
            .current(&format!("/agent/peers/{agent}"), SOON, |s| {
                s.payload == b"online"
            })
            .await;
    }
    let mut breakevens = Vec::new();
    for name in &fleet {
        let state = watcher
            .current(&format!("/{name}/state"), SOON, |s| {
                s.json()["nameplate"]["power_w"]
                    .as_f64()
                    .is_some_and(|w| w > 0.0)
            })
            .await
            .json();
        let nameplate = &state["nameplate"];
        let j_per_th = nameplate["power_w"].as_f64().unwrap_or(0.0)
            / nameplate["hashrate_ths"].as_f64().unwrap_or(1.0);
        breakevens.push(j_per_th * 24.0 * 0.06);
    }
    let lowest = breakevens.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = breakevens.iter().copied().fold(0.0, f64::max);
    // Both agents must have seen each other before the price moves, or both would plan alone.
    for agent in &agents {
        agent.wait_for_log("agent group changed", SOON).await;
    }

    // A price under every breakeven: the whole site sleeps, each miner by its own agent.
    let market = format!("hashwarden/v1/{SITE}/market");
    let reading = |hashprice: f64, at: u64| testbed::site::market(SITE, hashprice, at);
    watcher
        .publish(&market, &reading(lowest * 0.6, unix_now()), true)
        .await;
    for name in &fleet {
        watcher
            .wait_for(&format!("/{name}/telemetry"), SOON, |s| {
                s.json()["mode"] == "sleeping"
            })
            .await;
    }
    let pair = {
        let mut group = Group::new(AGENTS[0]);
        group.presence(AGENTS[1], true);
        group
    };
    for (agent, process) in AGENTS.iter().zip(&agents) {
        let log = process.log_text();
        for name in &fleet {
            let sent = log.contains(&format!("command sent miner={name} "))
                || log.contains(&format!("miner={name} want=Sleep"));
            assert_eq!(
                sent,
                pair.owner(name) == *agent,
                "{agent} commands {name} only if it owns it:\n{log}"
            );
        }
    }

    // agent-b dies without a word: its will hands its miners to agent-a, which wakes them all.
    let mut agents = agents.into_iter();
    let (survivor, victim) = (agents.next().expect("a"), agents.next().expect("b"));
    victim.kill();
    watcher
        .wait_for("/agent/peers/agent-b", SOON, |s| s.payload == b"offline")
        .await;
    // (Within the plausibility guard's 3× step.)
    watcher
        .publish(&market, &reading(highest * 1.3, unix_now() + 1), true)
        .await;
    for name in &fleet {
        watcher
            .wait_for(&format!("/{name}/telemetry"), SOON, |s| {
                s.json()["mode"] == "mining"
            })
            .await;
    }
    let (status, summary) = survivor.terminate();
    assert!(status.success());
    let owned_by_a = fleet.iter().filter(|m| pair.owns(m)).count() as u64;
    assert_eq!(
        summary["commands_sent"],
        owned_by_a + fleet.len() as u64,
        "its own sleeps, then every wake: {summary}"
    );
    for (name, miner) in fleet.iter().zip(&miners) {
        let log = miner.log_text();
        assert_eq!(
            log.matches("action=Sleep").count(),
            1,
            "{name} slept once:\n{log}"
        );
        assert!(!log.contains("rejected"), "{name}: {log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
