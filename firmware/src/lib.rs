//! `hashwarden-fw`, the control-board daemon, as a library: the binary (`main.rs`) is its
//! command line, and the fuzz targets reach the parsers that face the outside (the cgminer and
//! HTTP API requests) through it.

pub mod board;
pub mod cgminer;
pub mod commands;
pub mod config;
pub mod control;
pub mod cooling;
pub mod daemon;
pub mod desk;
pub mod device_key;
pub mod http;
pub mod image_cli;
pub mod launch;
pub mod local;
pub mod metrics;
pub mod mining;
pub mod mqtt;
pub mod operating;
pub mod persist;
pub mod pool;
pub mod serial;
pub mod silence;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snapshot;
pub mod telemetry;
pub mod unit;
pub mod update;
