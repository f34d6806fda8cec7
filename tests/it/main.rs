//! Integration tests, one binary (ripgrep's layout) to keep link times down.

mod api;
mod config_files;
mod fleet;
mod functions;
mod operate;
mod ovs;
mod prometheus;
mod salt;
mod snmp_fleet;
mod snmpd;
mod support;
