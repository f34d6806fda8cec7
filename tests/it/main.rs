//! Integration tests, one binary (ripgrep's layout) to keep link times down.

mod api;
mod config_files;
mod fleet;
mod functions;
mod fuzz;
mod limits;
mod operate;
mod prometheus;
mod salt;
mod secrets;
mod snmp_fleet;
mod snmpd;
mod support;
