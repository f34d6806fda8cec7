//! Drover: one process that proxies thousands of agentless network devices (REST,
//! later SNMP and Open vSwitch) as minions of a master. See `ARCHITECTURE.md` for the
//! path of one job.

pub mod config;
pub mod devsim;
pub mod drivers;
pub mod events;
pub mod fileserver;
pub mod fleet;
pub mod fnmatch;
pub mod functions;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod inventory;
pub mod job;
pub mod master;
pub mod minion_state;
pub mod pillar;
pub mod poll;
pub mod pyrepr;
pub mod run;
pub mod schedule;
pub mod secrets;
pub mod shard;
pub mod states;
pub mod telemetry;
