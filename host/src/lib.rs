//! The hashwarden fleet agent as a library, for its binary, its benches and the end-to-end
//! suites. The decisions are pure modules with reasons (`units`, `market`, `tariff`, `power_price`,
//! `grid`, `planner`, `executor`, `rollout`, `backtest`); the agent (`agent`) is the loop that feeds
//! them from MQTT, HTTP and its store and carries their answers out. `demo` (the `demo` feature)
//! runs a simulated site and is not in a production build.
#![forbid(unsafe_code)]

pub mod agent;
pub mod backtest;
pub mod dashboard;
#[cfg(feature = "demo")]
pub mod demo;
pub mod enrol;
pub mod enrol_cli;
pub mod executor;
pub mod feed_cli;
pub mod feeds;
pub mod flash;
pub mod fleet;
pub mod follow;
pub mod grid;
pub mod keys;
pub mod market;
pub mod metrics;
pub mod planner;
pub mod plausible;
pub mod power_price;
pub mod rollout;
pub mod shard;
pub mod site;
pub mod sources;
pub mod store;
pub mod tariff;
pub mod units;
