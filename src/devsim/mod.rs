//! Device simulators: stand-ins for the agentless devices Drover proxies, so
//! the daemon can be exercised against thousands of "devices" on one machine.
//!
//! [`rest`] simulates devices speaking the REST API of Salt's `rest_sample`
//! proxy module (the bottle server from salt-contrib's
//! `proxyminion_rest_example`). Each device listens on its own loopback port,
//! like a separate real device, keeps its own services/packages state, and
//! can be given a [`Fault`] at start (a seeded share of the fleet, see
//! [`FaultRates`]) or at runtime ([`RestSim::set_fault`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use drover::devsim::{Fault, RestSim, RestSimConfig};
//! let sim = RestSim::start(RestSimConfig { count: 100, ..Default::default() }).await?;
//! let first = sim.devices()[0].clone(); // id "rest-0001", url "http://127.0.0.1:PORT/"
//! sim.set_fault(&first.id, Fault::Down);
//! std::fs::write("inventory.toml", sim.inventory_toml())?;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Why a hand-written HTTP/1.1 responder instead of hyper
//!
//! The faults need control that hyper's connection driver hides: `Reset`
//! must set `SO_LINGER` 0 on the very socket a request arrived on and drop it
//! instead of answering; `Garbage` writes a body that lies about being JSON;
//! `Down` must close every open connection of one device at once. With hyper
//! the socket is owned by the connection future, so each of these would need
//! a wrapper I/O type and side channels. The `rest_sample` client only sends
//! small GETs, so the responder needed (request head, `Content-Length`
//! bodies discarded, keep-alive and pipelining, a single write per response)
//! is about two hundred lines in the private `http` module, and it has a
//! smaller per-connection footprint (a 1 KiB buffer and one task) than a
//! hyper connection, which matters at 10,000 devices.
//!
//! # Resource use
//!
//! One tokio task per device (its listener) plus one per open connection; no
//! threads of its own. Each device's state maps are shared with every other
//! device until that device first changes them. File descriptors: one per
//! device plus one per open connection, so raise `RLIMIT_NOFILE` accordingly
//! before starting large fleets.
//!
//! [`netconf`] simulates NETCONF devices: an SSH server per device with the
//! `netconf` subsystem and a small candidate-based datastore.
//!
//! [`OnThread`] serves a simulator from a thread and runtime of its own, so the
//! devices never share a scheduler with the fleet that drives them.

#[doc(hidden)]
pub mod chaos;
mod http;
pub mod netconf;
mod on_thread;
pub mod rest;
mod shares;
pub mod snmp;

pub use on_thread::OnThread;
pub use rest::{Fault, FaultRates, RestSim, RestSimConfig, SimDeviceInfo};
