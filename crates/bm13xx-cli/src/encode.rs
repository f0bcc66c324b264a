//! `bm13xx encode …`: frames and register words from command-line values.

use bm13xx::header::prev_hash_from_stratum;
use bm13xx::pll::{PllConstraints, solve};
use bm13xx::{
    BlockHeader, ChipModel, Command, Destination, Frequency, HeaderJob, Job, JobId, MidstateJob,
    TicketDifficulty, VersionMask,
};
use serde::Serialize;

use crate::CliError;

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `--addr N` for one chip; `--broadcast`, or neither, for all of them.
pub fn destination(address: Option<u8>, broadcast: bool) -> Result<Destination, CliError> {
    match (address, broadcast) {
        (Some(address), false) => Ok(Destination::Chip(address)),
        (None, _) => Ok(Destination::All),
        (Some(_), true) => Err(CliError::Input(
            "give --addr or --broadcast, not both".into(),
        )),
    }
}

pub fn command(command: Command) -> String {
    hex_upper(command.encode().as_bytes())
}

#[derive(Debug, Serialize)]
pub struct PllReport {
    chip: &'static str,
    target_mhz: f64,
    fbdiv: u16,
    refdiv: u8,
    postdiv1: u8,
    postdiv2: u8,
    actual_mhz: f64,
    vco_mhz: f64,
    register: u32,
    frame: String,
}

pub fn pll(model: ChipModel, mhz: f64) -> Result<PllReport, CliError> {
    let target = Frequency::from_mhz(mhz)
        .ok_or_else(|| CliError::Input(format!("{mhz} MHz is out of range")))?;
    let setting = solve(model, target, PllConstraints::esp_miner(model))
        .map_err(|e| CliError::Input(e.to_string()))?;
    let d = setting.parameter.dividers();
    Ok(PllReport {
        chip: model.name(),
        target_mhz: target.mhz(),
        fbdiv: d.fbdiv(),
        refdiv: d.refdiv(),
        postdiv1: d.postdiv1(),
        postdiv2: d.postdiv2(),
        actual_mhz: setting.actual.mhz(),
        vco_mhz: setting.vco.mhz(),
        register: setting.parameter.value(),
        frame: command(Command::write(Destination::All, setting.parameter)),
    })
}

impl PllReport {
    pub fn text(&self) -> String {
        format!(
            "{} {} MHz: fbdiv {} refdiv {} postdiv1 {} postdiv2 {} -> {} MHz (VCO {} MHz)\nregister 0x08 = 0x{:08X}\nframe {}",
            self.chip,
            self.target_mhz,
            self.fbdiv,
            self.refdiv,
            self.postdiv1,
            self.postdiv2,
            self.actual_mhz,
            self.vco_mhz,
            self.register,
            self.frame
        )
    }
}

#[derive(Debug, Serialize)]
pub struct TicketReport {
    requested: f64,
    /// The power of two the chip actually filters at.
    difficulty: f64,
    register: u32,
    frame: String,
}

pub fn ticket_mask(difficulty: f64) -> Result<TicketReport, CliError> {
    let ticket = TicketDifficulty::at_most(difficulty)
        .ok_or_else(|| CliError::Input(format!("{difficulty} is not a difficulty")))?;
    let mask = ticket.mask();
    Ok(TicketReport {
        requested: difficulty,
        difficulty: ticket.value(),
        register: mask.value(),
        frame: command(Command::write(Destination::All, mask)),
    })
}

impl TicketReport {
    pub fn text(&self) -> String {
        format!(
            "difficulty {} -> {} (power of two)\nregister 0x14 = 0x{:08X}\nframe {}",
            self.requested, self.difficulty, self.register, self.frame
        )
    }
}

/// The values `encode job` takes.
#[derive(Debug, Clone)]
pub struct JobArgs {
    pub model: ChipModel,
    pub job_id: u8,
    pub version: u32,
    /// Stratum `mining.notify` form.
    pub prev_hash: [u8; 32],
    /// Internal byte order.
    pub merkle_root: [u8; 32],
    pub ntime: u32,
    pub nbits: u32,
    pub midstates: u8,
    pub version_mask: Option<u32>,
}

pub fn job(args: &JobArgs) -> Result<String, CliError> {
    let job_id = JobId::new(args.model, args.job_id).map_err(|e| CliError::Input(e.to_string()))?;
    let header = BlockHeader {
        version: args.version,
        prev_hash: prev_hash_from_stratum(&args.prev_hash),
        merkle_root: args.merkle_root,
        ntime: args.ntime,
        nbits: args.nbits,
        nonce: 0,
    };
    let job = match (args.model, args.midstates) {
        (ChipModel::Bm1397, 1) => {
            if args.version_mask.is_some() {
                return Err(CliError::Input("--version-mask needs --midstates 4".into()));
            }
            Job::Midstate(MidstateJob::from_header(job_id, &header, None))
        }
        (ChipModel::Bm1397, 4) => {
            let mask = VersionMask::new(args.version_mask.unwrap_or(VersionMask::BIP320.bits()));
            if mask.bits() == 0 {
                return Err(CliError::Input(
                    "--version-mask must have at least one bit set".into(),
                ));
            }
            Job::Midstate(MidstateJob::from_header(job_id, &header, Some(mask)))
        }
        (ChipModel::Bm1397, n) => {
            return Err(CliError::Input(format!(
                "--midstates must be 1 or 4, not {n}"
            )));
        }
        (model, 1) => {
            if args.version_mask.is_some() {
                return Err(CliError::Input(format!(
                    "{model} rolls the version in hardware (register 0xA4); --version-mask is for bm1397"
                )));
            }
            Job::Header(HeaderJob::new(job_id, &header))
        }
        (model, _) => {
            return Err(CliError::Input(format!(
                "{model} takes full-header jobs: --midstates is for bm1397"
            )));
        }
    };
    Ok(hex_upper(job.encode().as_bytes()))
}

pub fn crc5(bytes: &[u8]) -> String {
    format!("0x{:02X}", bm13xx::crc::crc5(bytes))
}

pub fn crc16(bytes: &[u8]) -> String {
    format!("0x{:04X}", bm13xx::crc::crc16(bytes))
}
