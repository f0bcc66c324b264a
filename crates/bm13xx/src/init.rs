//! Chain enumeration and initialisation per model (§6), as sans-IO sequencers.
//!
//! Each model's sequence is a table of [`Action`]s transcribed from the spec; the sequencer expands
//! the per-chip and ramp actions and resolves the words that depend on the configuration (ticket
//! mask, hash counting number, version mask, target frequency). Magic values stay in the tables
//! where they can be checked against the captures they were copied from.

use crate::command::{Command, Destination};
use crate::frequency::Frequency;
use crate::header::VersionMask;
use crate::model::ChipModel;
use crate::nonce::{ChipAddressing, InvalidChipCount};
use crate::pll::{NoPllSolution, PllConstraints};
use crate::ramp::FrequencyRamp;
use crate::registers::{HashCountingNumber, InvalidVersionMask, Register, VersionRolling, address};
use crate::response::ResponseFormat;
use crate::sequence::Step;
use crate::ticket::TicketDifficulty;

/// Wait after an ordinary configuration write (the sources use 1–10 ms).
const WRITE_WAIT_MS: u32 = 1;
/// Wait around chain-inactive and addressing (cgminer, bm13xx-chain).
const CHAIN_WAIT_MS: u32 = 100;
/// ESP-Miner waits up to 1 s for each chip-id answer.
const ENUMERATE_TIMEOUT_MS: u32 = 1_000;
/// Time to let a new baud settle (bm13xx-chain waits 50 + 50 ms).
const BAUD_SETTLE_MS: u32 = 100;

/// How a chain should come up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitConfig {
    pub model: ChipModel,
    pub chips: u32,
    pub ticket: TicketDifficulty,
    pub frequency: Frequency,
    /// The pool's version mask (BM1366+ roll it in hardware).
    pub version_mask: VersionMask,
    pub pll: PllConstraints,
}

impl InitConfig {
    /// ESP-Miner's defaults for a chain: ticket difficulty 256, the model's default clock, BIP320.
    pub fn esp_miner(model: ChipModel, chips: u32) -> Self {
        Self {
            model,
            chips,
            ticket: TicketDifficulty::from_log2(8).unwrap_or(TicketDifficulty::ONE),
            frequency: model.default_frequency(),
            version_mask: VersionMask::BIP320,
            pll: PllConstraints::esp_miner(model),
        }
    }
}

/// Why a sequence could not be built or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    ChipCount(#[from] InvalidChipCount),
    #[error(transparent)]
    VersionMask(#[from] InvalidVersionMask),
    #[error(transparent)]
    Pll(#[from] NoPllSolution),
}

/// A register word in a script: fixed, or taken from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Fixed(u32),
    TicketMask,
    HashCountingNumber,
    VersionRolling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Broadcast(u8, Word),
    FirstChip(u8, Word),
    /// These writes to every chip in turn, then a wait per chip.
    EachChip(&'static [(u8, u32)], u32),
    Enumerate,
    ChainInactive,
    AssignAddresses,
    Ramp,
    /// Switch the chain and the host to this baud (misc/fast-UART word, host rate).
    Baud(u32, u32),
}

use Action::{
    AssignAddresses, Baud, Broadcast, ChainInactive, EachChip, Enumerate, FirstChip, Ramp,
};
use Word::{Fixed, HashCountingNumber as Hcn, TicketMask, VersionRolling as Vr};

const HOST_MAX_BAUD_BM1397: u32 = 3_125_000;
/// BT8D 2 gives 1 041 667 Bd by the formula; hosts run at 1 000 000 and it works (§7, §15).
const HOST_MAX_BAUD_BM1366: u32 = 1_000_000;

/// §6.2, ESP-Miner's order.
const BM1397_SCRIPT: &[Action] = &[
    Enumerate,
    ChainInactive,
    AssignAddresses,
    Broadcast(address::CLOCK_ORDER_CONTROL0, Fixed(0)),
    Broadcast(address::CLOCK_ORDER_CONTROL1, Fixed(0)),
    Broadcast(address::ORDERED_CLOCK_ENABLE, Fixed(0x0000_0001)),
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8074)),
    Broadcast(address::TICKET_MASK, TicketMask),
    Broadcast(address::PLL3, Fixed(0xC070_0111)),
    Broadcast(address::FAST_UART, Fixed(0x0600_000F)),
    Broadcast(address::MISC_CONTROL, Fixed(0x0000_7A31)),
    Ramp,
    Baud(0x0000_6031, HOST_MAX_BAUD_BM1397),
];

const BM1366_PER_CHIP: &[(u8, u32)] = &[
    (address::SOFT_RESET, 0x0007_01F0),
    (address::MISC_CONTROL, 0xF000_C100),
    (address::CORE_REGISTER_CONTROL, 0x8000_8540),
    (address::CORE_REGISTER_CONTROL, 0x8000_8020),
    (address::CORE_REGISTER_CONTROL, 0x8000_82AA),
];

/// §6.3.
const BM1366_SCRIPT: &[Action] = &[
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Enumerate,
    Broadcast(address::SOFT_RESET, Fixed(0x0007_0000)),
    Broadcast(address::MISC_CONTROL, Fixed(0xFF0F_C100)),
    ChainInactive,
    AssignAddresses,
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8540)),
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8020)),
    Broadcast(address::TICKET_MASK, TicketMask),
    Broadcast(address::ANALOG_MUX, Fixed(0x0000_0003)),
    Broadcast(address::IO_DRIVER_STRENGTH, Fixed(0x0211_1111)),
    FirstChip(address::UART_RELAY, Fixed(0x007C_0003)),
    EachChip(BM1366_PER_CHIP, WRITE_WAIT_MS),
    Ramp,
    Broadcast(address::HASH_COUNTING_NUMBER, Hcn),
    Broadcast(address::VERSION_ROLLING, Vr),
    Baud(0x1130_0200, HOST_MAX_BAUD_BM1366),
];

const BM1368_PER_CHIP: &[(u8, u32)] = &[
    (address::SOFT_RESET, 0x0007_01F0),
    (address::MISC_CONTROL, 0xF000_C100),
    (address::CORE_REGISTER_CONTROL, 0x8000_8B00),
    (address::CORE_REGISTER_CONTROL, 0x8000_8018),
    (address::CORE_REGISTER_CONTROL, 0x8000_82AA),
];

/// §6.4: ESP-Miner sends chain-inactive straight after the count, and waits 500 ms per chip.
const BM1368_SCRIPT: &[Action] = &[
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Enumerate,
    ChainInactive,
    Broadcast(address::SOFT_RESET, Fixed(0x0007_0000)),
    Broadcast(address::MISC_CONTROL, Fixed(0xFF0F_C100)),
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8B00)),
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8018)),
    Broadcast(address::TICKET_MASK, Fixed(0x0000_00FF)),
    Broadcast(address::ANALOG_MUX, Fixed(0x0000_0003)),
    Broadcast(address::IO_DRIVER_STRENGTH, Fixed(0x0211_1111)),
    AssignAddresses,
    EachChip(BM1368_PER_CHIP, 500),
    Broadcast(address::TICKET_MASK, TicketMask),
    Ramp,
    Broadcast(address::HASH_COUNTING_NUMBER, Hcn),
    Broadcast(address::VERSION_ROLLING, Vr),
    Baud(0x1130_0200, HOST_MAX_BAUD_BM1366),
];

const BM1370_PER_CHIP: &[(u8, u32)] = &[
    (address::SOFT_RESET, 0x0007_01F0),
    (address::MISC_CONTROL, 0xF000_C100),
    (address::CORE_REGISTER_CONTROL, 0x8000_8B00),
    (address::CORE_REGISTER_CONTROL, 0x8000_800C),
    (address::CORE_REGISTER_CONTROL, 0x8000_82AA),
];

/// §6.5, frames ESP-Miner copied from an S21 Pro capture.
const BM1370_SCRIPT: &[Action] = &[
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::VERSION_ROLLING, Vr),
    Enumerate,
    Broadcast(address::VERSION_ROLLING, Vr),
    Broadcast(address::SOFT_RESET, Fixed(0x0007_0000)),
    Broadcast(address::MISC_CONTROL, Fixed(0xF000_C100)),
    ChainInactive,
    AssignAddresses,
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8B00)),
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_800C)),
    Broadcast(address::TICKET_MASK, TicketMask),
    Broadcast(address::IO_DRIVER_STRENGTH, Fixed(0x0001_1111)),
    EachChip(BM1370_PER_CHIP, WRITE_WAIT_MS),
    Broadcast(address::BM1370_B9, Fixed(0x0000_4480)),
    Broadcast(address::ANALOG_MUX, Fixed(0x0000_0002)),
    Broadcast(address::BM1370_B9, Fixed(0x0000_4480)),
    Broadcast(address::CORE_REGISTER_CONTROL, Fixed(0x8000_8DEE)),
    Ramp,
    Broadcast(address::HASH_COUNTING_NUMBER, Hcn),
    Baud(0x1130_0200, HOST_MAX_BAUD_BM1366),
];

const fn script(model: ChipModel) -> &'static [Action] {
    match model {
        ChipModel::Bm1397 => BM1397_SCRIPT,
        ChipModel::Bm1366 => BM1366_SCRIPT,
        ChipModel::Bm1368 => BM1368_SCRIPT,
        ChipModel::Bm1370 => BM1370_SCRIPT,
    }
}

/// Where the sequencer is inside an action that expands to several steps.
#[derive(Debug, Clone)]
enum Cursor {
    Start,
    /// Chip index, write index within the per-chip list.
    Chips(u32, usize),
    Ramp(FrequencyRamp),
    /// The chain's baud write was sent; the host switch is next.
    BaudWritten,
    /// A single-step action has yielded its step.
    Done,
}

/// The whole bring-up of one chain, from reset to mining at the target frequency and the fast baud.
/// Yields [`Step`]s; a [`Step::Enumerate`] is where the caller checks the chip count.
///
/// ```
/// use bm13xx::{ChipModel, InitConfig, InitSequence, Step};
///
/// let mut steps = InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1397, 1))?;
/// let Some(Ok(Step::Enumerate { frame, expected: 1, .. })) = steps.next() else { panic!() };
/// assert_eq!(frame.as_bytes(), [0x55, 0xAA, 0x52, 0x05, 0x00, 0x00, 0x0A]);
/// let last = steps.last();
/// assert!(matches!(last, Some(Ok(Step::SetHostBaud { baud: 3_125_000, .. }))));
/// # Ok::<(), bm13xx::InitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct InitSequence {
    config: InitConfig,
    addressing: ChipAddressing,
    version_rolling: VersionRolling,
    actions: &'static [Action],
    cursor: Cursor,
}

impl InitSequence {
    pub fn new(config: InitConfig) -> Result<Self, InitError> {
        Ok(Self {
            addressing: ChipAddressing::for_chain(config.chips)?,
            version_rolling: VersionRolling::new(config.version_mask)?,
            actions: script(config.model),
            cursor: Cursor::Start,
            config,
        })
    }

    pub fn addressing(&self) -> ChipAddressing {
        self.addressing
    }

    /// BM1366+ enable version rolling before they enumerate, so they answer in 11 bytes from then on.
    pub fn response_format(&self) -> ResponseFormat {
        match self.config.model {
            ChipModel::Bm1397 => ResponseFormat::Short,
            _ => ResponseFormat::Long,
        }
    }

    fn resolve(&self, word: Word) -> u32 {
        let c = &self.config;
        match word {
            Fixed(value) => value,
            TicketMask => c.ticket.mask().to_value(),
            Hcn => HashCountingNumber::esp_miner(c.model, c.frequency, c.chips).to_value(),
            Vr => self.version_rolling.to_value(),
        }
    }

    fn write(destination: Destination, register: u8, value: u32, wait_ms: u32) -> Step {
        let command = Command::WriteRegister {
            destination,
            register,
            value,
        };
        Step::send(command.encode(), wait_ms)
    }

    fn advance(&mut self) {
        self.actions = self.actions.get(1..).unwrap_or(&[]);
        self.cursor = Cursor::Start;
    }

    /// The next step of the current action, or `None` when that action is finished.
    fn step_within(&mut self, action: Action) -> Option<Result<Step, InitError>> {
        let cursor = core::mem::replace(&mut self.cursor, Cursor::Start);
        match (action, cursor) {
            (Broadcast(register, word), Cursor::Start) => {
                self.cursor = Cursor::Done;
                Some(Ok(Self::write(
                    Destination::All,
                    register,
                    self.resolve(word),
                    WRITE_WAIT_MS,
                )))
            }
            (FirstChip(register, word), Cursor::Start) => {
                self.cursor = Cursor::Done;
                let first = Destination::Chip(0);
                Some(Ok(Self::write(
                    first,
                    register,
                    self.resolve(word),
                    WRITE_WAIT_MS,
                )))
            }
            (Enumerate, Cursor::Start) => {
                self.cursor = Cursor::Done;
                Some(Ok(Step::Enumerate {
                    frame: Command::read(Destination::All, address::CHIP_ID).encode(),
                    expected: self.config.chips,
                    format: self.response_format(),
                    timeout_ms: ENUMERATE_TIMEOUT_MS,
                    // ESP-Miner waits 20 ms before chain-inactive.
                    wait_ms: 20,
                }))
            }
            (ChainInactive, Cursor::Start) => {
                self.cursor = Cursor::Done;
                Some(Ok(Step::send(
                    Command::ChainInactive.encode(),
                    CHAIN_WAIT_MS,
                )))
            }
            (AssignAddresses, Cursor::Start) => self.address_step(0),
            (AssignAddresses, Cursor::Chips(index, _)) => self.address_step(index),
            (EachChip(writes, wait), Cursor::Start) => self.chip_step(writes, wait, 0, 0),
            (EachChip(writes, wait), Cursor::Chips(chip, write)) => {
                self.chip_step(writes, wait, chip, write)
            }
            (Ramp, Cursor::Start) => {
                let c = &self.config;
                let ramp =
                    FrequencyRamp::new(c.model, c.model.reset_frequency(), c.frequency, c.pll);
                self.ramp_step(ramp)
            }
            (Ramp, Cursor::Ramp(ramp)) => self.ramp_step(ramp),
            (Baud(word, _), Cursor::Start) => {
                self.cursor = Cursor::BaudWritten;
                let register = match self.config.model {
                    ChipModel::Bm1397 => address::MISC_CONTROL,
                    _ => address::FAST_UART,
                };
                Some(Ok(Self::write(
                    Destination::All,
                    register,
                    word,
                    WRITE_WAIT_MS,
                )))
            }
            (Baud(_, host_baud), Cursor::BaudWritten) => {
                self.cursor = Cursor::Done;
                Some(Ok(Step::SetHostBaud {
                    baud: host_baud,
                    wait_ms: BAUD_SETTLE_MS,
                }))
            }
            _ => None,
        }
    }

    fn address_step(&mut self, index: u32) -> Option<Result<Step, InitError>> {
        let address = self
            .addressing
            .address_of(index)
            .filter(|_| index < self.config.chips)?;
        self.cursor = Cursor::Chips(index + 1, 0);
        let last = index + 1 == self.config.chips;
        let wait = if last { CHAIN_WAIT_MS } else { WRITE_WAIT_MS };
        Some(Ok(Step::send(
            Command::SetAddress { address }.encode(),
            wait,
        )))
    }

    fn chip_step(
        &mut self,
        writes: &'static [(u8, u32)],
        per_chip_wait: u32,
        chip: u32,
        write: usize,
    ) -> Option<Result<Step, InitError>> {
        let (register, value) = *writes.get(write)?;
        let address = self
            .addressing
            .address_of(chip)
            .filter(|_| chip < self.config.chips)?;
        let last_write = write + 1 == writes.len();
        self.cursor = if last_write {
            Cursor::Chips(chip + 1, 0)
        } else {
            Cursor::Chips(chip, write + 1)
        };
        let wait = if last_write {
            per_chip_wait
        } else {
            WRITE_WAIT_MS
        };
        Some(Ok(Self::write(
            Destination::Chip(address),
            register,
            value,
            wait,
        )))
    }

    fn ramp_step(&mut self, mut ramp: FrequencyRamp) -> Option<Result<Step, InitError>> {
        let step = ramp.next()?;
        self.cursor = Cursor::Ramp(ramp);
        Some(step.map_err(InitError::from))
    }
}

impl Iterator for InitSequence {
    type Item = Result<Step, InitError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let action = *self.actions.first()?;
            match self.step_within(action) {
                // Nothing after a failed step may be sent: the chain is in an unknown state.
                Some(Err(error)) => {
                    self.actions = &[];
                    return Some(Err(error));
                }
                Some(step) => return Some(step),
                None => self.advance(),
            }
        }
    }
}
