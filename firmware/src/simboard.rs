//! The simulated board's hardware as the daemon drives it: the chain over the simulator's UART,
//! its TPS546 and EMC2101 over the simulated I2C, its reset line. Every change goes through the
//! same hashboard code a real board uses (bring-up, curtail, PLL ramps, voltage ramps).

use std::time::Duration;

use bm13xx::{Frequency, FrequencyRamp, InitConfig, PllConstraints, Response, Step};
use chipsim::{SimControl, SimUart};
use hashboard::board::BoardDescription;
use hashboard::chain::Chain;
use hashboard::drivers::emc2101::{self, Emc2101};
use hashboard::drivers::tps546::{self, Tps546, VoutLimits};
use hashboard::profile::StoredProfile;

/// While mining, the simulator follows the wall clock and waits are real.
pub struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(u64::from(ns))).await;
    }
}

/// How often an idle (asleep) board looks for something to do.
const ASLEEP_POLL: Duration = Duration::from_millis(100);

pub struct SimBoard {
    pub board: &'static BoardDescription,
    pub control: SimControl,
    /// `None` while the chain has never been brought up (started asleep); the port waits here.
    chain: Option<Chain<SimUart>>,
    port: Option<SimUart>,
    regulator: Tps546<chipsim::Tps546>,
    fan: Emc2101<chipsim::Emc2101>,
    reset: chipsim::ResetPin,
    init: InitConfig,
    pub frequency: Frequency,
    pub core_mv: u32,
    asleep: bool,
}

impl SimBoard {
    /// Wires the board's peripherals; the chain stays down until [`SimBoard::power_up`].
    pub fn new(
        board: &'static BoardDescription,
        port: SimUart,
        control: SimControl,
        init: InitConfig,
        core_mv: u32,
    ) -> Result<Self, String> {
        let limits = VoutLimits {
            min_mv: board.regulator_mv(board.min_core_mv),
            max_mv: board.regulator_mv(board.max_core_mv),
        };
        let regulator = Tps546::init(control.regulator(), tps546::DEFAULT_ADDRESS, limits)
            .map_err(|e| format!("regulator: {e}"))?;
        let fan = Emc2101::init(control.fan_controller(), emc2101::DEFAULT_ADDRESS)
            .map_err(|e| format!("fan controller: {e}"))?;
        Ok(Self {
            board,
            reset: control.reset_pin(),
            control,
            chain: None,
            port: Some(port),
            regulator,
            fan,
            frequency: init.frequency,
            init,
            core_mv,
            asleep: true,
        })
    }

    pub fn asleep(&self) -> bool {
        self.asleep
    }

    pub fn chain(&self) -> Option<&Chain<SimUart>> {
        self.chain.as_ref()
    }

    /// Supply on at the board's lowest voltage, ramped to `core_mv`, then the chain brought up
    /// (the first time) or re-initialised at the current clock and voltage.
    pub async fn power_up(&mut self) -> Result<(), String> {
        let profile = self.uniform_profile();
        if let Some(chain) = &mut self.chain {
            hashboard::curtail::wake(
                chain,
                &mut self.regulator,
                &mut self.reset,
                &mut TokioDelay,
                self.board,
                self.init,
                &profile,
            )
            .await
            .map_err(|e| format!("wake failed: {e}"))?;
            self.asleep = false;
            return Ok(());
        }
        let board = self.board;
        self.regulator
            .set_vout_mv(board.regulator_mv(board.min_core_mv))
            .and_then(|()| self.regulator.set_output(true))
            .map_err(|e| format!("regulator: {e}"))?;
        hashboard::power::ramp_core_voltage(
            &mut self.regulator,
            board,
            &mut TokioDelay,
            board.min_core_mv,
            self.core_mv,
        )
        .await
        .map_err(|e| format!("regulator: {e}"))?;
        let port = self.port.take().ok_or("the chain's port is gone")?;
        let init = InitConfig {
            frequency: self.frequency,
            ..self.init
        };
        // Settle times are simulated time here: bring-up takes microseconds of wall time.
        let chain = Chain::bring_up(
            port,
            &mut self.reset,
            &mut hashboard::sim::SimTimeDelay(self.control.clone()),
            init,
        )
        .await
        .map_err(|e| format!("bring-up failed: {e}"))?;
        self.chain = Some(chain);
        self.asleep = false;
        Ok(())
    }

    /// A board that starts asleep keeps its supply off and its chain down.
    pub fn power_off_at_start(&mut self) -> Result<(), String> {
        self.regulator
            .set_output(false)
            .map_err(|e| format!("regulator: {e}"))?;
        self.fan
            .set_fan_percent(self.board.min_fan_percent)
            .map_err(|e| format!("fan: {e}"))?;
        self.asleep = true;
        Ok(())
    }

    fn uniform_profile(&self) -> StoredProfile {
        let chips = self.board.chips_per_chain as usize;
        let mut clocks_khz = [0u32; hashboard::mining::MAX_CHIPS];
        for clock in clocks_khz.iter_mut().take(chips) {
            *clock = self.frequency.khz();
        }
        StoredProfile {
            model: self.board.model,
            core_mv: self.core_mv,
            chips,
            clocks_khz,
        }
    }

    /// Clock down in steps, supply off, fan to its minimum.
    pub async fn sleep(&mut self) -> Result<(), String> {
        let Some(chain) = &mut self.chain else {
            return self.power_off_at_start();
        };
        hashboard::curtail::sleep(
            chain,
            &mut self.regulator,
            Some(&mut self.fan),
            &mut TokioDelay,
            self.board,
            self.frequency,
        )
        .await
        .map_err(|e| format!("sleep failed: {e}"))?;
        self.asleep = true;
        Ok(())
    }

    /// Every chip to `target` through the PLL ramp.
    pub async fn set_frequency(&mut self, target: Frequency) -> Result<(), String> {
        if let Some(chain) = &mut self.chain
            && !self.asleep
        {
            let ramp = FrequencyRamp::new(
                self.board.model,
                self.frequency,
                target,
                PllConstraints::esp_miner(self.board.model),
            );
            for step in ramp {
                let step = step.map_err(|e| format!("no PLL setting for {}", e.target))?;
                if let Step::Send { frame, wait_ms } = step {
                    chain
                        .write_frame(frame.as_bytes())
                        .await
                        .map_err(|e| format!("UART: {e:?}"))?;
                    tokio::time::sleep(Duration::from_millis(u64::from(wait_ms))).await;
                }
            }
        }
        self.frequency = target;
        Ok(())
    }

    pub async fn set_core_voltage(&mut self, target_mv: u32) -> Result<(), String> {
        if !self.asleep {
            hashboard::power::ramp_core_voltage(
                &mut self.regulator,
                self.board,
                &mut TokioDelay,
                self.core_mv,
                target_mv,
            )
            .await
            .map_err(|e| format!("regulator: {e}"))?;
        }
        self.core_mv = target_mv;
        Ok(())
    }

    /// The next frame from the chain, waiting at most `timeout_ms`; an asleep board only waits.
    pub async fn next_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, String> {
        match &mut self.chain {
            Some(chain) if !self.asleep => chain
                .next_response(&mut TokioDelay, timeout_ms)
                .await
                .map_err(|e| format!("UART: {e:?}")),
            _ => {
                tokio::time::sleep(ASLEEP_POLL).await;
                Ok(None)
            }
        }
    }

    pub async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.chain {
            Some(chain) if !self.asleep => chain
                .write_frame(bytes)
                .await
                .map_err(|e| format!("UART: {e:?}")),
            _ => Ok(()),
        }
    }

    /// Regulator output power, W (what a real board reads over PMBus).
    pub fn power_w(&mut self) -> Option<f64> {
        if self.asleep {
            return Some(0.0);
        }
        self.regulator.telemetry().ok().map(|t| f64::from(t.pout_w))
    }

    /// Fan speed (tachometer) and the board sensor's temperature.
    pub fn fan_and_temperature(&mut self) -> (Option<u32>, Option<f64>) {
        (
            self.fan.fan_rpm().ok(),
            self.fan.external_temp_c().ok().map(f64::from),
        )
    }
}

/// In `--sim` the simulator's die temperatures stand in for per-chip sensors.
pub fn hottest_chip(sim: &chipsim::ChainSim) -> f64 {
    sim.chips()
        .iter()
        .map(|c| c.thermal.temp_c)
        .fold(f64::MIN, f64::max)
}
