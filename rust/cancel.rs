//! Cooperative cancellation: long loops poll `check()`, the Python glue sets the flag on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Ask running work to stop at its next check.
pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Clear the flag before starting new work.
pub fn reset() {
    CANCELLED.store(false, Ordering::SeqCst);
}

/// `Err(Cancelled)` once a stop was requested.
pub fn check() -> Result<()> {
    if CANCELLED.load(Ordering::Relaxed) {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}
