//! A minimal progress line on stderr. Drawn only when the caller asks (the CLI asks when stderr is a TTY
//! and `--json`/`--quiet` are off); redrawn at most ten times a second.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    state: Mutex<State>,
}

struct State {
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress { enabled, state: Mutex::new(State { last_draw: None, drawn: false }) }
    }

    pub fn hidden() -> Self {
        Self::new(false)
    }

    /// Redraw the line with `msg()` unless the last redraw was under 100 ms ago.
    pub fn update(&self, msg: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if st.last_draw.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
            return;
        }
        st.last_draw = Some(now);
        st.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", msg());
        let _ = err.flush();
    }

    /// End the current line (keeps the last message visible).
    pub fn finish(&self, msg: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\r\x1b[2K{}", msg());
        let _ = err.flush();
        st.drawn = false;
        st.last_draw = None;
    }
}

/// "12.3 MB" style sizes for progress lines.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}
