//! NETCONF (RFC 6241) over SSH (RFC 6242): framing, XML, session and the driver.

pub mod framing;
