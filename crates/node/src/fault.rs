//! Crash points, for the tests that kill a node at each step of a refresh
//! and of a replacement (crates/cli/tests/crash.rs). Debug builds only: in
//! a release build [`crash_point`] is empty.
//!
//! `SHARDVAULT_CRASH_AT=NODE:POINT[,NODE:POINT…]` makes node `NODE`'s
//! process kill itself (SIGKILL) as soon as it reaches `POINT`: no reply,
//! no destructor, no clean shutdown, as a power cut would leave it. The
//! points are before the node answered: `refresh-started` (a refresh just
//! begun, none of its messages sent), and right after a step was made
//! durable, `refresh-stored`, `activated`, `repair-stored`, `derived`.

/// The variable naming the crash points.
pub const CRASH_AT_ENV: &str = "SHARDVAULT_CRASH_AT";

/// Aborts this process if `node`'s `point` is named in [`CRASH_AT_ENV`].
#[cfg(debug_assertions)]
pub(crate) fn crash_point(node: shardvault_wire::NodeId, point: &str) {
    let Ok(points) = std::env::var(CRASH_AT_ENV) else { return };
    let wanted = format!("{node}:{point}");
    if points.split(',').any(|p| p.trim() == wanted) {
        tracing::error!(%node, point, "crash point reached ({CRASH_AT_ENV}): killing this process");
        let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
        std::process::abort();
    }
}

/// Release builds have no crash points.
#[cfg(not(debug_assertions))]
pub(crate) fn crash_point(_node: shardvault_wire::NodeId, _point: &str) {}
