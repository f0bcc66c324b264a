//! Blocking embedded-hal 1.0 I2C drivers for the parts on BM13xx boards. Each checks the part's
//! identity where it has one, converts units, and refuses values outside what the board allows.

pub mod ds4432u;
pub mod emc2101;
pub mod ina260;
pub mod tps546;

/// What can go wrong talking to a board peripheral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriverError<E: core::fmt::Debug> {
    #[error("I2C transfer failed: {0:?}")]
    Bus(E),
    #[error("unexpected device identity {found:#06x}")]
    WrongDevice { found: u32 },
    #[error("{requested_mv} mV is outside the board's {min_mv}..={max_mv} mV")]
    OutOfRange {
        requested_mv: u32,
        min_mv: u32,
        max_mv: u32,
    },
    #[error("the temperature sensor's diode is open or shorted")]
    SensorFault,
}
