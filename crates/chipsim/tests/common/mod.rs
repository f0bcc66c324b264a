//! A minimal host for driving a simulated chain in tests: it plays bm13xx's init sequence and
//! decodes what comes back. It is deliberately not the production driver (issue #4).
#![allow(dead_code)]

use bm13xx::{
    ChipModel, Event, InitConfig, InitSequence, Response, ResponseDecoder, ResponseFormat, Step,
};
use chipsim::{ChainConfig, ChainSim};

pub struct Host {
    pub sim: ChainSim,
    pub baud: u32,
    pub decoder: ResponseDecoder,
}

impl Host {
    pub fn new(model: ChipModel, chips: u32, seed: u64) -> Self {
        let mut config = ChainConfig::new(model, chips, seed);
        // Cheap nonces for tests: 2^-32 below the ticket difficulty.
        config.share_floor_log2 = 32;
        Self::with_config(config)
    }

    pub fn with_config(config: ChainConfig) -> Self {
        let format = if config.model == ChipModel::Bm1397 {
            ResponseFormat::Short
        } else {
            ResponseFormat::Long
        };
        Self {
            sim: ChainSim::new(config).expect("valid config"),
            // Hosts open the port at 115 200 (protocol.md §1).
            baud: 115_200,
            decoder: ResponseDecoder::chip_to_host(format),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sim.receive(bytes, self.baud);
    }

    pub fn responses(&mut self) -> Vec<Event<Response>> {
        let bytes = self.sim.take_output(self.baud);
        self.decoder.feed(&bytes).collect()
    }

    /// Takes what the chain sent and counts the nonces in it.
    pub fn nonce_count(&mut self) -> usize {
        let events = self.responses();
        events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Frame {
                        frame: Response::Nonce(_),
                        ..
                    }
                )
            })
            .count()
    }

    /// Plays the whole init sequence; returns the responses to the enumeration read.
    pub fn init(&mut self, config: InitConfig) -> Vec<Event<Response>> {
        let mut enumeration = Vec::new();
        for step in InitSequence::new(config).expect("valid") {
            match step.expect("solvable") {
                Step::Send { frame, wait_ms } => {
                    self.send(frame.as_bytes());
                    self.sim.advance(f64::from(wait_ms) / 1000.0);
                }
                Step::Enumerate { frame, wait_ms, .. } => {
                    self.send(frame.as_bytes());
                    enumeration = self.responses();
                    self.sim.advance(f64::from(wait_ms) / 1000.0);
                }
                Step::SetHostBaud { baud, wait_ms } => {
                    self.baud = baud;
                    self.sim.advance(f64::from(wait_ms) / 1000.0);
                }
            }
        }
        enumeration
    }
}
