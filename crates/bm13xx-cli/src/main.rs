//! `bm13xx`: decode UART captures of BM13xx hashing chips and encode frames by hand.

mod decode;
mod encode;
mod input;
mod number;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use bm13xx::{ChipModel, Command, NonceLayout};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::decode::Dir;
use crate::number::{parse_positive, parse_u8, parse_u32};

/// What went wrong, as one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, Parser)]
#[command(
    name = "bm13xx",
    version,
    about = "Decode and encode BM1397/BM1366/BM1368/BM1370 UART frames"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Decode a capture: one line per frame or error.
    Decode(DecodeArgs),
    /// Print a frame or register word.
    #[command(subcommand)]
    Encode(EncodeCmd),
    /// CRC5 of hex bytes, as commands carry it.
    Crc5 {
        /// Hex bytes (spaces allowed).
        #[arg(required = true, num_args = 1..)]
        hex: Vec<String>,
    },
    /// CRC-16/CCITT-FALSE of hex bytes, as jobs carry it.
    Crc16 {
        #[arg(required = true, num_args = 1..)]
        hex: Vec<String>,
    },
}

fn parse_model(text: &str) -> Result<ChipModel, String> {
    text.parse()
        .map_err(|e: bm13xx::model::UnknownModel| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Layout {
    /// Core V[31:25], chip field V[24:17] (ESP-Miner).
    EspMiner,
    /// BM1397 only: core V[31:24], small core V[23:22], chip field V[21:14] (cgminer).
    Cgminer,
}

#[derive(Debug, Args)]
struct DecodeArgs {
    #[arg(long, default_value = "bm1397", value_parser = parse_model)]
    chip: ChipModel,
    /// tx = host to chips, rx = chips to host. Default: from the first preamble in the capture.
    #[arg(long, value_enum)]
    dir: Option<Dir>,
    /// Chips answer in 11 bytes (BM1366+ with register 0xA4 enabled).
    #[arg(long)]
    version_rolling: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Chips on the chain, for the chip index of nonces (address interval 256 / chips).
    #[arg(long, default_value_t = 1)]
    chips: u32,
    /// Where the core and chip bits sit in a nonce.
    #[arg(long, value_enum)]
    nonce_layout: Option<Layout>,
    /// Read the capture (hex text or raw binary) from a file.
    #[arg(long, conflicts_with = "hex")]
    file: Option<PathBuf>,
    /// Hex bytes, or - (or nothing) for standard input.
    hex: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum EncodeCmd {
    /// Every chip forgets its address (broadcast 0x53).
    ChainInactive,
    /// The first chip without an address takes this one.
    SetAddress {
        #[arg(long, value_parser = parse_u8)]
        addr: u8,
    },
    ReadRegister {
        #[arg(long, value_parser = parse_u8)]
        reg: u8,
        #[arg(long, value_parser = parse_u8)]
        addr: Option<u8>,
        #[arg(long)]
        broadcast: bool,
    },
    WriteRegister {
        #[arg(long, value_parser = parse_u8)]
        reg: u8,
        #[arg(long, value_parser = parse_u32)]
        value: u32,
        #[arg(long, value_parser = parse_u8)]
        addr: Option<u8>,
        #[arg(long)]
        broadcast: bool,
    },
    /// PLL dividers for a hash clock (ESP-Miner's search) and the register 0x08 write.
    Pll {
        #[arg(long, value_parser = parse_model)]
        chip: ChipModel,
        #[arg(long, value_parser = parse_positive)]
        mhz: f64,
        #[arg(long)]
        json: bool,
    },
    /// Register 0x14 for a difficulty (rounded down to a power of two).
    TicketMask {
        #[arg(long, value_parser = parse_positive)]
        difficulty: f64,
        #[arg(long)]
        json: bool,
    },
    /// A job frame from Stratum work.
    Job(JobCmd),
}

#[derive(Debug, Args)]
struct JobCmd {
    #[arg(long, value_parser = parse_model)]
    chip: ChipModel,
    #[arg(long, value_parser = parse_u8)]
    job_id: u8,
    #[arg(long, value_parser = parse_u32)]
    version: u32,
    /// As `mining.notify` sends it (each 4-byte word byte-swapped).
    #[arg(long)]
    prev_hash: String,
    /// Internal byte order.
    #[arg(long)]
    merkle_root: String,
    #[arg(long, value_parser = parse_u32)]
    ntime: u32,
    #[arg(long, value_parser = parse_u32)]
    nbits: u32,
    /// BM1397: 1, or 4 with AsicBoost (midstate k hashes the version rolled k times).
    #[arg(long, default_value_t = 1, value_parser = parse_u8)]
    midstates: u8,
    #[arg(long, value_parser = parse_u32)]
    version_mask: Option<u32>,
}

fn hash_arg(name: &str, text: &str) -> Result<[u8; 32], CliError> {
    bm13xx::hex::decode_array(text).map_err(|e| CliError::Input(format!("--{name}: {e}")))
}

fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Io(e.to_string());
    match cli.command {
        Cmd::Decode(args) => {
            let source = match (&args.file, args.hex.as_slice()) {
                (Some(path), _) => input::Source::File(path.clone()),
                (None, []) => input::Source::Stdin,
                (None, [dash]) if dash == "-" => input::Source::Stdin,
                (None, hex) => input::Source::Argument(hex.join(" ")),
            };
            let layout = match (args.nonce_layout, args.chip) {
                (Some(Layout::Cgminer), ChipModel::Bm1397) => NonceLayout::BM1397_CGMINER,
                (Some(Layout::Cgminer), model) => {
                    return Err(CliError::Input(format!(
                        "the cgminer nonce layout is for bm1397, not {model}"
                    )));
                }
                (_, model) => NonceLayout::default_for(
                    model,
                    if args.version_rolling {
                        bm13xx::ResponseFormat::Long
                    } else {
                        bm13xx::ResponseFormat::Short
                    },
                ),
            };
            let options = decode::Options {
                model: args.chip,
                dir: args.dir,
                version_rolling: args.version_rolling,
                json: args.json,
                chips: args.chips,
                layout,
            };
            let bytes = input::read(&source)?;
            for record in decode::decode(&options, &bytes)? {
                let line = if options.json {
                    serde_json::to_string(&record).map_err(|e| CliError::Io(e.to_string()))?
                } else {
                    decode::text(&record)
                };
                writeln!(out, "{line}").map_err(io)?;
            }
        }
        Cmd::Encode(cmd) => {
            let text = match cmd {
                EncodeCmd::ChainInactive => encode::command(Command::ChainInactive),
                EncodeCmd::SetAddress { addr } => {
                    encode::command(Command::SetAddress { address: addr })
                }
                EncodeCmd::ReadRegister {
                    reg,
                    addr,
                    broadcast,
                } => encode::command(Command::read(encode::destination(addr, broadcast)?, reg)),
                EncodeCmd::WriteRegister {
                    reg,
                    value,
                    addr,
                    broadcast,
                } => encode::command(Command::WriteRegister {
                    destination: encode::destination(addr, broadcast)?,
                    register: reg,
                    value,
                }),
                EncodeCmd::Pll { chip, mhz, json } => {
                    let report = encode::pll(chip, mhz)?;
                    if json {
                        json_line(&report)?
                    } else {
                        report.text()
                    }
                }
                EncodeCmd::TicketMask { difficulty, json } => {
                    let report = encode::ticket_mask(difficulty)?;
                    if json {
                        json_line(&report)?
                    } else {
                        report.text()
                    }
                }
                EncodeCmd::Job(job) => encode::job(&encode::JobArgs {
                    model: job.chip,
                    job_id: job.job_id,
                    version: job.version,
                    prev_hash: hash_arg("prev-hash", &job.prev_hash)?,
                    merkle_root: hash_arg("merkle-root", &job.merkle_root)?,
                    ntime: job.ntime,
                    nbits: job.nbits,
                    midstates: job.midstates,
                    version_mask: job.version_mask,
                })?,
            };
            writeln!(out, "{text}").map_err(io)?;
        }
        Cmd::Crc5 { hex } => {
            writeln!(out, "{}", encode::crc5(&input::parse_hex(&hex.join(" "))?)).map_err(io)?
        }
        Cmd::Crc16 { hex } => {
            writeln!(out, "{}", encode::crc16(&input::parse_hex(&hex.join(" "))?)).map_err(io)?
        }
    }
    Ok(())
}

fn json_line(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string(value).map_err(|e| CliError::Io(e.to_string()))
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result =
        run(cli, &mut out).and_then(|()| out.flush().map_err(|e| CliError::Io(e.to_string())));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Io(message)) if message.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
