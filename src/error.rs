//! The library's error: one variant per layer, each naming the file or key at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Config(#[from] crate::util::config::ConfigError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<crate::train::checkpoint::CheckpointError> for Error {
    fn from(e: crate::train::checkpoint::CheckpointError) -> Self {
        Error::Train(e.into())
    }
}
