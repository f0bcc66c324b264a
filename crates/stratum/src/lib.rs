//! A sans-IO Stratum V1 mining client: the firmware feeds it lines from the pool and sends the
//! lines it returns; it keeps the session (configure, subscribe, authorize), turns
//! `mining.notify` into headers, rolls extranonce2, submits shares and counts them. Hostile or
//! broken pools get a [`PoolError`], never a panic.
//!
//! ```
//! use stratum::{Phase, Session};
//!
//! let mut session = Session::new("bc1qworker.rig1", "x");
//! let hello = session.start(); // configure, subscribe, authorize
//! assert_eq!(hello.len(), 3);
//! // The pool answers the subscribe (id 2) and the authorize (id 3)…
//! session.handle_line(r#"{"id":2,"result":[[],"e9695791",4],"error":null}"#)?;
//! session.handle_line(r#"{"id":3,"result":true,"error":null}"#)?;
//! assert_eq!(session.phase(), Phase::Ready);
//! // …and until it sends a job there is nothing to hash.
//! assert!(session.next_work().is_none());
//! # Ok::<(), stratum::PoolError>(())
//! ```

pub mod backoff;
pub mod session;
pub mod work;

pub use backoff::{Backoff, Failover, Retry};
pub use session::{Accounting, Event, Phase, PoolWork, Session};
pub use work::{Notify, merkle_root};

/// Why a pool is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("pool broke the protocol: {0}")]
    Malformed(String),
    #[error("pool refused us: {0}")]
    Refused(String),
}
