//! Exit codes: an API for the Job's `podFailurePolicy` (README, "Exit codes"). Each error type
//! maps itself to one of these where it is defined.

/// Success, also "nothing to do".
pub const OK: u8 = 0;
/// Bad configuration, unknown bucket, denied access: retrying cannot help.
pub const CONFIG: u8 = 2;
/// The Querier or the sink stayed unavailable through the retries.
pub const UNAVAILABLE: u8 = 3;
/// A window's data was refused (the engine cannot evaluate it); earlier windows were exported.
pub const DATA_REFUSED: u8 = 4;
/// An internal invariant failed: a bug.
pub const INTERNAL: u8 = 5;
/// Stopped by SIGTERM or SIGINT before finishing.
pub const INTERRUPTED: u8 = 6;
