//! `hashwarden enrolment`: which miners the agent listens to, with which key and since when, and
//! the miners it heard of but does not listen to — with the `[[machines]]` lines that would
//! enrol them (or pin keys taken at first sight, once a site is commissioned).

use std::path::Path;

use cli_common::time::utc;
use serde::Serialize;

use crate::site::SiteConfig;
use crate::store::Store;

/// One enrolled miner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrolledRow {
    pub miner: String,
    /// `config` or `first-seen`.
    pub how: &'static str,
    pub public_key: String,
    /// When it was enrolled at first sight (unix s); `None` for a key from the config.
    pub since: Option<u64>,
}

/// What `hashwarden enrolment --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    pub mode: crate::enrol::EnrolMode,
    pub enrolled: Vec<EnrolledRow>,
    pub unenrolled: Vec<crate::enrol::Unenrolled>,
}

/// The listing for the site at `config`, from its config and its agent's store.
pub fn listing(config: &Path) -> Result<Listing, String> {
    let site = SiteConfig::load(config).map_err(|e| e.to_string())?;
    let agent = site
        .agent
        .as_ref()
        .ok_or_else(|| format!("{}: no [agent] section (and so no store)", config.display()))?;
    let store = Store::open(&agent.store).map_err(|e| e.to_string())?;
    let mut enrolled: Vec<EnrolledRow> = site
        .machines
        .iter()
        .filter_map(|m| {
            Some(EnrolledRow {
                miner: m.id.clone(),
                how: "config",
                public_key: m.public_key.clone()?.to_ascii_lowercase(),
                since: None,
            })
        })
        .collect();
    for (miner, public_key, at) in store.enrolled().map_err(|e| e.to_string())? {
        // The config's key is the one in force.
        if !enrolled.iter().any(|row| row.miner == miner) {
            enrolled.push(EnrolledRow {
                miner,
                how: "first-seen",
                public_key,
                since: Some(at),
            });
        }
    }
    enrolled.sort_by(|a, b| a.miner.cmp(&b.miner));
    let unenrolled = store
        .unenrolled()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|held| !enrolled.iter().any(|row| row.miner == held.miner))
        .collect();
    Ok(Listing {
        mode: agent.enrol,
        enrolled,
        unenrolled,
    })
}

/// The listing for people.
pub fn render(listing: &Listing) -> String {
    let mut out = String::new();
    let mode = match listing.mode {
        crate::enrol::EnrolMode::Config => "only keys in the site config",
        crate::enrol::EnrolMode::FirstSeen => "keys in the site config, and others at first sight",
    };
    out += &format!("enrolment: {mode}\n\n");
    out += &format!("enrolled ({}):\n", listing.enrolled.len());
    for row in &listing.enrolled {
        let since = row
            .since
            .map_or(String::new(), |at| format!("  since {}", utc(at)));
        out += &format!(
            "  {:<24} {:<10} {}{since}\n",
            row.miner, row.how, row.public_key
        );
    }
    if !listing.unenrolled.is_empty() {
        out += &format!(
            "\nnot listened to ({}): heard of, not enrolled\n",
            listing.unenrolled.len()
        );
        for held in &listing.unenrolled {
            out += &format!(
                "  {:<24} last heard {}: {}\n",
                held.miner,
                utc(held.last_seen),
                held.why
            );
        }
    }
    let to_pin: Vec<(&str, &str)> = listing
        .enrolled
        .iter()
        .filter(|row| row.how == "first-seen")
        .map(|row| (row.miner.as_str(), row.public_key.as_str()))
        .chain(
            listing
                .unenrolled
                .iter()
                .filter_map(|held| Some((held.miner.as_str(), held.public_key.as_deref()?))),
        )
        .collect();
    if !to_pin.is_empty() {
        out += "\nTo pin these keys (check each against `hashwarden-fw device-key` on the \
                machine first), add to the site config:\n";
        for (miner, key) in to_pin {
            out += &format!("\n[[machines]]\nid = \"{miner}\"\npublic_key = \"{key}\"\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_names_keys_times_and_the_lines_that_pin_them() {
        let listing = Listing {
            mode: crate::enrol::EnrolMode::FirstSeen,
            enrolled: vec![
                EnrolledRow {
                    miner: "m1".into(),
                    how: "config",
                    public_key: "aa".repeat(32),
                    since: None,
                },
                EnrolledRow {
                    miner: "m2".into(),
                    how: "first-seen",
                    public_key: "bb".repeat(32),
                    since: Some(1_796_693_212),
                },
            ],
            unenrolled: vec![crate::enrol::Unenrolled {
                miner: "m3".into(),
                first_seen: 1_796_693_000,
                last_seen: 1_796_693_100,
                public_key: None,
                why: "it does not sign its reports".into(),
            }],
        };
        let text = render(&listing);
        assert!(text.contains("since 2026-12-08 01:26:52 UTC"), "{text}");
        assert!(text.contains("m3"), "{text}");
        assert!(text.contains("it does not sign its reports"), "{text}");
        // m2's key can be pinned; m1's is pinned already; m3 has none to pin.
        assert!(
            text.contains(&format!(
                "id = \"m2\"\npublic_key = \"{}\"",
                "bb".repeat(32)
            )),
            "{text}"
        );
        assert!(!text.contains("id = \"m1\""), "{text}");
        assert!(!text.contains("id = \"m3\""), "{text}");
        let json = serde_json::to_value(&listing).expect("encodes");
        assert_eq!(json["mode"], "first-seen");
        assert_eq!(json["enrolled"][1]["how"], "first-seen");
    }
}
