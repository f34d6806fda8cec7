//! Integration tests, one binary (ripgrep's layout) to keep link times down.

mod api;
mod bench;
mod chaos;
mod config_files;
mod fleet;
mod functions;
mod fuzz;
mod health;
mod limits;
mod netconf;
mod netconf_sim;
mod operate;
mod ovs;
mod prometheus;
mod salt;
mod salt_master;
mod salt_pillar;
mod salt_states;
mod salt_syndic;
mod secrets;
mod snmp_fleet;
mod snmpd;
mod states;
mod support;
mod traps;
mod zmtp_proxy;
