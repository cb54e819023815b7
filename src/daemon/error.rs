//! Why the daemon could not start or run, and which of those a person must fix in the
//! configuration (exit code 78).

use std::path::PathBuf;

use crate::capture::CaptureError;
use crate::index::IndexError;
use crate::live;
use crate::web;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot create the data directory {}: {source} (check storage.data_dir and its permissions)", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source} (is another edgecam running? change web.listen)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the index in the data directory: {0}")]
    Index(#[from] IndexError),
    #[error("live view: {0}")]
    Live(#[from] live::LiveError),
    #[error(transparent)]
    Mqtt(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Https(#[from] web::https::HttpsError),
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Speaker(#[from] crate::speaker::PlaybackError),
    #[error(transparent)]
    Rtsp(#[from] crate::rtsp::RtspError),
    #[error("upload: {0}")]
    Upload(#[source] crate::aws::AwsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("the {part} part {how}; edgecam stopped so that it can be restarted")]
    PartFailed { part: &'static str, how: String },
}

impl DaemonError {
    /// True when the configuration (or pipeline file) must be fixed: exit code 78.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Capture(e) if !e.is_retryable())
            || matches!(
                self,
                Self::Mqtt(_) | Self::Https(_) | Self::Speaker(_) | Self::Detect(_)
            )
            || matches!(self, Self::Live(live::LiveError::Aws(_)))
            || matches!(self, Self::Upload(_))
    }
}
