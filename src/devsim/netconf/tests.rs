//! End-to-end tests of the NETCONF simulator.
