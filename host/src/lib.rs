//! The hashwarden fleet agent's pure core: units, hashprice from the network, the tariff, and
//! the curtailment planner. No I/O here: the agent feeds these from MQTT, HTTP and its store.
#![forbid(unsafe_code)]

pub mod agent;
pub mod backtest;
pub mod dashboard;
pub mod demo;
pub mod executor;
pub mod fleet;
pub mod follow;
pub mod grid;
pub mod keys;
pub mod market;
pub mod metrics;
pub mod planner;
pub mod power;
pub mod rollout;
pub mod shard;
pub mod site;
pub mod sources;
pub mod store;
pub mod tariff;
pub mod units;
