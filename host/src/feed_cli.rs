//! `hashwarden feed market|power|grid`: signs one reading with a feed key and publishes it,
//! retained, on the site's topic — for cron jobs, scripts and integrations. `--print` writes the
//! signed message to stdout instead, for a pipeline that publishes by other means.

use std::path::PathBuf;
use std::time::Duration;

use fleet_proto::feed::FeedKind;
use fleet_proto::{GridSignal, Market, Name, PowerPrice};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};

/// How long the broker gets to take the reading.
const PUBLISH_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    #[command(subcommand)]
    pub reading: Reading,
    /// The feed's private key (`hashwarden keys init --out FILE --key-id ID`).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// The key's id, as the site's `[[feeds.trusted_keys]]` names it.
    #[arg(long, global = true, default_value = "feed")]
    pub key_id: String,
    /// The site, as its `[site] name`.
    #[arg(long, global = true)]
    pub site: Option<String>,
    #[arg(long, global = true, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// A file holding the broker password (never on the command line).
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// How long the reading stands: `15m`, `1h`, … (the agent refuses it once expired).
    #[arg(long, global = true, default_value = "1h")]
    pub ttl: String,
    /// Print the signed message instead of publishing it.
    #[arg(long, global = true)]
    pub print: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Reading {
    /// The hashprice, or the network's figures to compute it from.
    Market {
        /// $/PH/s/day.
        #[arg(long, conflicts_with_all = ["difficulty", "height", "fees", "btc_usd"])]
        hashprice: Option<f64>,
        #[arg(long, requires_all = ["height", "fees", "btc_usd"])]
        difficulty: Option<f64>,
        #[arg(long)]
        height: Option<u64>,
        /// Average fees per block over the last 144 blocks, BTC.
        #[arg(long)]
        fees: Option<f64>,
        #[arg(long)]
        btc_usd: Option<f64>,
    },
    /// The site's power price now, $/kWh (may be negative).
    Power {
        #[arg(long, allow_hyphen_values = true)]
        usd_per_kwh: f64,
    },
    /// A site power cap from the grid operator or the EMS; `--lift` ends it.
    Grid {
        #[arg(long, conflicts_with = "lift")]
        cap_kw: Option<f64>,
        #[arg(long)]
        lift: bool,
        /// When the cap starts (unix seconds; default now).
        #[arg(long)]
        from: Option<u64>,
        /// How long it holds from its start: `30m`, `2h`, …
        #[arg(long = "for")]
        duration: Option<String>,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The reading as its topic takes it, and which kind it is; refused here when it could never be
/// taken, so a script hears of its mistake at once.
fn reading(reading: &Reading, now: u64) -> Result<(FeedKind, serde_json::Value), String> {
    let finite = |name: &str, value: f64| {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(format!("--{name} {value} is not a number"))
        }
    };
    let (kind, value) = match reading {
        Reading::Market {
            hashprice,
            difficulty,
            height,
            fees,
            btc_usd,
        } => {
            if hashprice.is_none() && difficulty.is_none() {
                return Err(
                    "market: give --hashprice, or --difficulty with --height, --fees and --btc-usd"
                        .into(),
                );
            }
            if let Some(h) = hashprice
                && finite("hashprice", *h)? <= 0.0
            {
                return Err(format!("--hashprice {h} is not positive"));
            }
            let market = Market {
                v: 1,
                at: now,
                hashprice_usd_per_ph_day: *hashprice,
                difficulty: *difficulty,
                height: *height,
                fees_per_block_btc: *fees,
                btc_usd: *btc_usd,
            };
            (FeedKind::Market, serde_json::to_value(market))
        }
        Reading::Power { usd_per_kwh } => {
            let price = PowerPrice {
                v: 1,
                at: now,
                usd_per_kwh: finite("usd-per-kwh", *usd_per_kwh)?,
            };
            (FeedKind::Power, serde_json::to_value(price))
        }
        Reading::Grid {
            cap_kw,
            lift,
            from,
            duration,
        } => {
            if cap_kw.is_none() && !lift {
                return Err("grid: give --cap-kw, or --lift".into());
            }
            if let Some(kw) = cap_kw
                && finite("cap-kw", *kw)? < 0.0
            {
                return Err(format!("--cap-kw {kw} is not a power"));
            }
            let start = from.unwrap_or(now).max(now);
            let until = duration
                .as_deref()
                .map(cli_common::parse_duration)
                .transpose()
                .map_err(|e| format!("--for {e}"))?
                .map(|s| start + s);
            let signal = GridSignal {
                v: 1,
                at: now,
                cap_kw: *cap_kw,
                until,
                from: *from,
            };
            (FeedKind::Grid, serde_json::to_value(signal))
        }
    };
    Ok((kind, value.map_err(|e| e.to_string())?))
}

/// Runs `hashwarden feed`.
pub fn run(args: &FeedArgs) -> Result<(), String> {
    let key = args.key.as_ref().ok_or("--key FILE is required")?;
    let site = args.site.as_deref().ok_or("--site NAME is required")?;
    let site = Name::new(site).map_err(|e| format!("--site: {e}"))?;
    let ttl = cli_common::parse_duration(&args.ttl).map_err(|e| format!("--ttl {e}"))?;
    let signer = crate::keys::load(key, &args.key_id)
        .map_err(|e| format!("--key {}: {e}", key.display()))?;
    let now = unix_now();
    let (kind, value) = reading(&args.reading, now)?;
    let bytes = fleet_proto::feed::FeedSigner::new(site.clone(), signer)
        .wire(kind, value, now, ttl)
        .map_err(|e| e.to_string())?;
    if args.print {
        println!("{}", String::from_utf8_lossy(&bytes));
        return Ok(());
    }
    let topic = kind.topic(&site);
    let password = args
        .password_file
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| fleet_mqtt::Secret::new(text.trim_end()))
                .map_err(|e| format!("--password-file {}: {e}", path.display()))
        })
        .transpose()?;
    let connection = fleet_mqtt::Connection::new(
        &args.broker,
        args.ca_file.as_deref(),
        args.username.as_deref(),
        password.as_ref(),
    )
    .map_err(|e| format!("--broker {}: {e}", args.broker))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(publish(&connection, &topic, bytes))?;
    println!(
        "{} reading published on {topic}, good for {}",
        kind.as_str(),
        args.ttl
    );
    Ok(())
}

/// Publishes `bytes` retained at QoS 1 and waits for the broker to take it.
async fn publish(
    connection: &fleet_mqtt::Connection,
    topic: &str,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let client_id = format!("hashwarden-feed-{}", std::process::id());
    let options = connection
        .client_options(client_id, None)
        .map_err(|e| e.to_string())?;
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let broker = connection.url.to_string();
    let delivered = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .publish(topic, QoS::AtLeastOnce, true, bytes.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    let _ = client.disconnect().await;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(format!("broker {broker}: {e}")),
            }
        }
    };
    tokio::time::timeout(PUBLISH_WITHIN, delivered)
        .await
        .map_err(|_| {
            format!(
                "broker {broker}: no answer within {} s",
                PUBLISH_WITHIN.as_secs()
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reading_is_the_message_its_topic_takes() {
        let now = 1_767_225_600;
        let (kind, market) = reading(
            &Reading::Market {
                hashprice: Some(28.0),
                difficulty: None,
                height: None,
                fees: None,
                btc_usd: None,
            },
            now,
        )
        .expect("valid");
        assert_eq!(kind, FeedKind::Market);
        let parsed: Market = serde_json::from_value(market).expect("a market reading");
        assert_eq!(parsed.hashprice_usd_per_ph_day, Some(28.0));
        let (_, grid) = reading(
            &Reading::Grid {
                cap_kw: Some(0.0),
                lift: false,
                from: None,
                duration: Some("2h".into()),
            },
            now,
        )
        .expect("valid");
        let parsed: GridSignal = serde_json::from_value(grid).expect("a grid signal");
        assert_eq!(
            (parsed.cap_kw, parsed.until),
            (Some(0.0), Some(now + 7_200))
        );
        for bad in [
            Reading::Market {
                hashprice: None,
                difficulty: None,
                height: None,
                fees: None,
                btc_usd: None,
            },
            Reading::Market {
                hashprice: Some(-1.0),
                difficulty: None,
                height: None,
                fees: None,
                btc_usd: None,
            },
            Reading::Power {
                usd_per_kwh: f64::NAN,
            },
            Reading::Grid {
                cap_kw: None,
                lift: false,
                from: None,
                duration: None,
            },
        ] {
            assert!(reading(&bad, now).is_err(), "{bad:?}");
        }
    }
}
