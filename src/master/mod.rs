//! Masters: where jobs come from and where returns go. Each master turns its own
//! protocol into [`crate::job::JobRequest`]s for the fleet's dispatcher and sends the
//! returns back; the dispatcher does not know which master a job came from.

pub mod bridge;
pub mod local;
pub mod salt;
