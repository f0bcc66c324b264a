//! `bm13xx decode`: one line per frame or error, as text or as JSON objects whose field names are a
//! contract for other tools.

use bm13xx::{
    ChipAddressing, ChipModel, ChipToHost, Command, DecodeError, Event, HostFrame, HostToChip,
    NonceLayout, Response, ResponseFormat, Side, StreamDecoder, decode_nonce,
};
use serde::Serialize;

use crate::CliError;

/// Which way the captured bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dir {
    Tx,
    Rx,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub model: ChipModel,
    /// `None`: decided by the first preamble in the capture.
    pub dir: Option<Dir>,
    pub version_rolling: bool,
    pub json: bool,
    pub chips: u32,
    pub layout: NonceLayout,
}

/// One output line.
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Record {
    Command(CommandRecord),
    Job(JobRecord),
    Register(RegisterRecord),
    Nonce(NonceRecord),
    Error(ErrorRecord),
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CommandRecord {
    dir: &'static str,
    kind: &'static str,
    broadcast: bool,
    chip_address: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    register: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<u32>,
    crc_ok: bool,
    offset: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct JobRecord {
    dir: &'static str,
    kind: &'static str,
    job_id: u8,
    midstates: u8,
    starting_nonce: u32,
    nbits: u32,
    ntime: u32,
    crc_ok: bool,
    offset: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RegisterRecord {
    dir: &'static str,
    kind: &'static str,
    chip_address: u8,
    register: u8,
    value: u32,
    crc_ok: bool,
    offset: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NonceRecord {
    dir: &'static str,
    kind: &'static str,
    nonce: u32,
    job_id: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    midstate: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    small_core: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_bits: Option<u32>,
    chip_index: u32,
    core: u8,
    crc_ok: bool,
    offset: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorRecord {
    kind: &'static str,
    reason: &'static str,
    offset: u64,
    len: usize,
}

/// The direction the user gave, or the one the first preamble in the capture shows.
fn direction_of(options: &Options, bytes: &[u8]) -> Dir {
    options.dir.unwrap_or_else(|| {
        let first = bytes
            .windows(2)
            .find(|w| w == &bm13xx::PREAMBLE_TX || w == &bm13xx::PREAMBLE_RX);
        match first {
            Some(w) if w == bm13xx::PREAMBLE_RX => Dir::Rx,
            _ => Dir::Tx,
        }
    })
}

fn response_format(options: &Options) -> Result<ResponseFormat, CliError> {
    match (options.version_rolling, options.model) {
        (false, _) => Ok(ResponseFormat::Short),
        (true, ChipModel::Bm1397) => Err(CliError::Input(
            "bm1397 has no hardware version rolling: its responses are always 9 bytes".into(),
        )),
        (true, _) => Ok(ResponseFormat::Long),
    }
}

/// Decodes a whole capture into records.
pub fn decode(options: &Options, bytes: &[u8]) -> Result<Vec<Record>, CliError> {
    let addressing =
        ChipAddressing::for_chain(options.chips).map_err(|e| CliError::Input(e.to_string()))?;
    // Refuse impossible options even when the capture turns out to be host → chip.
    let format = response_format(options)?;
    Ok(match direction_of(options, bytes) {
        Dir::Tx => records(HostToChip(options.model.job_format()), bytes, host_record),
        Dir::Rx => records(ChipToHost(format), bytes, |response, offset, crc_ok| {
            response_record(options, addressing, response, offset, crc_ok)
        }),
    })
}

fn records<S: Side>(
    side: S,
    bytes: &[u8],
    to_record: impl Fn(S::Frame, u64, bool) -> Record,
) -> Vec<Record> {
    let mut decoder = StreamDecoder::new(side);
    let mut events: Vec<Event<S::Frame>> = decoder.feed(bytes).collect();
    events.extend(decoder.finish());
    events
        .into_iter()
        .map(|event| match event {
            Event::Frame { frame, offset, .. } => to_record(frame, offset, true),
            // A host frame with a sound layout and a bad CRC is still worth showing for what it says.
            Event::Error(DecodeError {
                suspect: Some(frame),
                offset,
                ..
            }) => to_record(frame, offset, false),
            Event::Error(error) => Record::Error(ErrorRecord {
                kind: "error",
                reason: error.kind.as_str(),
                offset: error.offset,
                len: error.len,
            }),
        })
        .collect()
}

fn host_record(frame: HostFrame, offset: u64, crc_ok: bool) -> Record {
    match frame {
        HostFrame::Command(command) => Record::Command(command_record(command, offset, crc_ok)),
        HostFrame::Job(job) => Record::Job(JobRecord {
            dir: "tx",
            kind: "job",
            job_id: job.job_id(),
            midstates: job.midstate_count(),
            starting_nonce: job.starting_nonce(),
            nbits: job.nbits(),
            ntime: job.ntime(),
            crc_ok,
            offset,
        }),
    }
}

fn response_record(
    options: &Options,
    addressing: ChipAddressing,
    response: Response,
    offset: u64,
    crc_ok: bool,
) -> Record {
    match response {
        Response::Register(r) => Record::Register(RegisterRecord {
            dir: "rx",
            kind: "register",
            chip_address: r.chip_address,
            register: r.register,
            value: r.value,
            crc_ok,
            offset,
        }),
        Response::Nonce(n) => {
            let fields = decode_nonce(options.model, &n, options.layout, addressing);
            Record::Nonce(NonceRecord {
                dir: "rx",
                kind: "nonce",
                nonce: fields.nonce,
                job_id: fields.job_id,
                midstate: fields.midstate,
                small_core: fields.small_core,
                version_bits: fields.version_bits,
                chip_index: fields.chip_index,
                core: fields.core,
                crc_ok,
                offset,
            })
        }
    }
}

fn command_record(command: Command, offset: u64, crc_ok: bool) -> CommandRecord {
    let destination = command.destination();
    let (kind, register, value) = match command {
        Command::SetAddress { .. } => ("set_address", None, None),
        Command::WriteRegister {
            register, value, ..
        } => ("write_register", Some(register), Some(value)),
        Command::ReadRegister { register, .. } => ("read_register", Some(register), None),
        Command::ChainInactive => ("chain_inactive", None, None),
    };
    CommandRecord {
        dir: "tx",
        kind,
        broadcast: destination.is_broadcast(),
        chip_address: destination.address_byte(),
        register,
        value,
        crc_ok,
        offset,
    }
}

/// The human-readable line for a record.
pub fn text(record: &Record) -> String {
    let crc = |ok: bool| if ok { "" } else { " CRC-BAD" };
    match record {
        Record::Command(c) => {
            let target = if c.broadcast {
                "all".to_string()
            } else {
                format!("chip 0x{:02X}", c.chip_address)
            };
            let detail = match (c.kind, c.register, c.value) {
                ("set_address", ..) => format!("set_address 0x{:02X}", c.chip_address),
                (_, Some(reg), Some(value)) => {
                    format!("write {target} reg 0x{reg:02X} = 0x{value:08X}")
                }
                (_, Some(reg), None) => format!("read {target} reg 0x{reg:02X}"),
                (kind, ..) => kind.to_string(),
            };
            format!("@{:<6} tx {detail}{}", c.offset, crc(c.crc_ok))
        }
        Record::Job(j) => format!(
            "@{:<6} tx job id 0x{:02X} midstates {} start 0x{:08X} nbits 0x{:08X} ntime 0x{:08X}{}",
            j.offset,
            j.job_id,
            j.midstates,
            j.starting_nonce,
            j.nbits,
            j.ntime,
            crc(j.crc_ok)
        ),
        Record::Register(r) => format!(
            "@{:<6} rx reg 0x{:02X} = 0x{:08X} from chip 0x{:02X}",
            r.offset, r.register, r.value, r.chip_address
        ),
        Record::Nonce(n) => {
            let mut line = format!(
                "@{:<6} rx nonce 0x{:08X} job 0x{:02X} chip {} core {}",
                n.offset, n.nonce, n.job_id, n.chip_index, n.core
            );
            if let Some(m) = n.midstate {
                line += &format!(" midstate {m}");
            }
            if let Some(s) = n.small_core {
                line += &format!(" small-core {s}");
            }
            if let Some(v) = n.version_bits {
                line += &format!(" version-bits 0x{v:08X}");
            }
            line
        }
        Record::Error(e) => format!("@{:<6} error {} ({} bytes)", e.offset, e.reason, e.len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bm13xx::Job;

    fn options() -> Options {
        Options {
            model: ChipModel::Bm1397,
            dir: None,
            version_rolling: false,
            json: true,
            chips: 1,
            layout: NonceLayout::ESP_MINER,
        }
    }

    #[test]
    fn direction_follows_the_first_preamble() {
        let tx = [0x00, 0x55, 0xAA, 0x53];
        let rx = [0x55, 0x00, 0xAA, 0x55];
        assert_eq!(direction_of(&options(), &tx), Dir::Tx);
        assert_eq!(direction_of(&options(), &rx), Dir::Rx);
    }

    #[test]
    fn version_rolling_on_bm1397_is_refused() {
        let opts = Options {
            version_rolling: true,
            ..options()
        };
        assert!(matches!(decode(&opts, &[]), Err(CliError::Input(_))));
    }

    #[test]
    fn a_job_is_summarised() {
        let job = Job::Header(bm13xx::HeaderJob {
            job_id: 0x18,
            starting_nonce: 0,
            header: bm13xx::BlockHeader {
                version: 0x2000_0000,
                prev_hash: [0; 32],
                merkle_root: [0; 32],
                ntime: 5,
                nbits: 6,
                nonce: 0,
            },
            length_byte: 0x56,
        });
        let opts = Options {
            model: ChipModel::Bm1370,
            ..options()
        };
        let records = decode(&opts, job.encode().as_bytes()).expect("decodes");
        let json = serde_json::to_string(&records[0]).expect("serialises");
        assert_eq!(
            json,
            r#"{"dir":"tx","kind":"job","job_id":24,"midstates":1,"starting_nonce":0,"nbits":6,"ntime":5,"crc_ok":true,"offset":0}"#
        );
    }
}
