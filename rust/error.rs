//! One error type for the crate. The Python binding maps it to exceptions in one place (`py::to_pyerr`).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument from the caller (maps to `ValueError`).
    #[error("{0}")]
    Arg(String),

    /// An I/O failure on a named path (maps to `OSError`).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Input data that cannot be used: corrupt parquet, missing column, bad UTF-8, tampered tokenizer file...
    /// The message names the file and where in it (maps to `nanobpe.DataError`).
    #[error("{0}")]
    Data(String),

    /// The user pressed Ctrl-C (maps to `KeyboardInterrupt`).
    #[error("interrupted")]
    Cancelled,
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `arg!("...")` builds an `Error::Arg` with format arguments.
#[macro_export]
macro_rules! arg_err {
    ($($t:tt)*) => { $crate::error::Error::Arg(format!($($t)*)) };
}

/// `data_err!("...")` builds an `Error::Data` with format arguments.
#[macro_export]
macro_rules! data_err {
    ($($t:tt)*) => { $crate::error::Error::Data(format!($($t)*)) };
}
