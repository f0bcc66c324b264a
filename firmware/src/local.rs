//! Changes asked for through the machine's local APIs (the AxeOS-compatible HTTP API), as the
//! mining loop takes them off its queue: a transport hands one in with a channel for the reply,
//! and `commands::apply_local` carries it out like a fleet command.

/// A change asked for through the local API.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalAction {
    /// What a fleet command could ask (sleep, wake, clock, voltage, reboot).
    Command(fleet_proto::Action),
    /// A fixed fan duty, or `None` for automatic control. The thermal guard still watches.
    Fan(Option<f32>),
}

#[derive(Debug)]
pub struct LocalRequest {
    pub action: LocalAction,
    /// Applied, with a note; or why not.
    pub reply: tokio::sync::oneshot::Sender<Result<Option<String>, String>>,
}
