//! `hashwarden-fw image build|verify`: making a signed firmware image from a binary, and checking
//! one (on a miner before it installs, or by an operator before a rollout).

use std::path::PathBuf;

use clap::Subcommand;
use fleet_proto::TrustedKeys;
use fleet_proto::image::{self, Policy, Version};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Signs a binary into an image with the release key.
    Build {
        /// The `hashwarden-fw` binary (or any payload) to ship.
        #[arg(long)]
        bin: PathBuf,
        /// A board it runs on (`[board] name`); repeat for several.
        #[arg(long = "board", required = true)]
        boards: Vec<String>,
        /// The release key file (`hashwarden keys init`), mode 0600.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "release")]
        key_id: String,
        /// MAJOR.MINOR.PATCH; this build's own version by default.
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        version: String,
        #[arg(short = 'o', long)]
        out: PathBuf,
    },
    /// Checks an image: signature, hash, size, and (when given) board and minimum version.
    Verify {
        file: PathBuf,
        /// The release public key: 64 hex digits, or a file holding them.
        #[arg(long)]
        pubkey: String,
        #[arg(long, default_value = "release")]
        key_id: String,
        #[arg(long)]
        board: Option<String>,
        #[arg(long)]
        min_version: Option<String>,
    },
}

pub fn run(command: ImageCommand) -> Result<(), String> {
    match command {
        ImageCommand::Build {
            bin,
            boards,
            key,
            key_id,
            version,
            out,
        } => {
            let version: Version = version.parse().map_err(|e| format!("--version: {e}"))?;
            let seed = cli_common::keyfile::read_seed(&key).map_err(|e| format!("--key: {e}"))?;
            let payload =
                std::fs::read(&bin).map_err(|e| format!("--bin {}: {e}", bin.display()))?;
            let built_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let image = image::build(&payload, version, &boards, &key_id, &seed, built_at);
            std::fs::write(&out, &image).map_err(|e| format!("-o {}: {e}", out.display()))?;
            println!(
                "{}: version {version} for {} ({} bytes payload, {} bytes image)",
                out.display(),
                boards.join(", "),
                payload.len(),
                image.len()
            );
            Ok(())
        }
        ImageCommand::Verify {
            file,
            pubkey,
            key_id,
            board,
            min_version,
        } => {
            let hex = match std::fs::read_to_string(&pubkey) {
                Ok(text) => text.trim().to_string(),
                Err(_) => pubkey.trim().to_string(),
            };
            let mut keys = TrustedKeys::default();
            keys.trust_hex(&key_id, &hex)
                .map_err(|e| format!("--pubkey: {e}"))?;
            let min_version = min_version
                .map(|v| v.parse::<Version>())
                .transpose()
                .map_err(|e| format!("--min-version: {e}"))?;
            let policy = Policy {
                keys: &keys,
                board: board.as_deref(),
                min_version,
                max_size: image::DEFAULT_MAX_PAYLOAD,
            };
            let reader = std::fs::File::open(&file)
                .map(std::io::BufReader::new)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let manifest = image::verify(reader, &policy, &mut std::io::sink())
                .map_err(|e| format!("{}: refused: {e}", file.display()))?;
            println!(
                "{}",
                serde_json::to_string(&manifest).map_err(|e| e.to_string())?
            );
            Ok(())
        }
    }
}
