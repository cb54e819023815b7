//! AWS for every cloud part of the daemon: region, credentials (the IoT credentials
//! provider or the SDK chain), the SDK clients, SigV4 signing for the calls the SDK does not make, and the Kinesis Video
//! Streams control-plane calls (streams, data endpoints, playback URLs, still images).

pub mod images;
pub mod iot;
pub mod sign;
pub mod signaling;
pub mod skew;

pub use skew::{skew_from_date, skew_ms, skewed};
pub mod stream;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;

/// Bound on one control-plane call, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS credentials: {0} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")]
    Credentials(String),
    #[error("{call}: {message}")]
    Call { call: &'static str, message: String },
    #[error("cannot sign the request: {0}")]
    Sign(String),
    #[error("aws: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl AwsError {
    /// A failed AWS call, with the whole error chain (SDK errors hide the cause).
    pub(crate) fn call(call: &'static str, e: &(dyn std::error::Error + 'static)) -> Self {
        Self::Call {
            call,
            message: error_chain(e),
        }
    }

    /// An answer without a field the call exists for.
    pub(crate) fn missing(call: &'static str, what: &str) -> Self {
        Self::Call {
            call,
            message: format!("no {what} in the answer"),
        }
    }
}

/// Region, credentials and endpoint override for every AWS client of the daemon.
#[derive(Debug, Clone)]
pub struct Aws {
    sdk: SdkConfig,
    endpoint_url: Option<String>,
    data_endpoint_url: Option<String>,
    /// The service's clock against ours, learned from responses; every SDK request is
    /// signed with it.
    skew: skew::Skew,
}

impl Aws {
    /// Builds the shared AWS configuration from `[aws]`; with `credentials = "iot"` every
    /// client gets its credentials from the IoT credentials provider.
    pub async fn from_config(cfg: &crate::config::Aws) -> Result<Self, AwsError> {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build();
        let skew = skew::Skew::default();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .timeout_config(timeouts)
            .time_source(skew.clone());
        if cfg.credentials == crate::config::CredentialSource::Iot {
            let tls = crate::tls::client_config("aws", &cfg.ca, &cfg.cert, &cfg.key, false)?;
            loader = loader.credentials_provider(iot::IotCredentials::new(iot::IotEndpoint {
                host: cfg.iot_credentials_endpoint.clone(),
                role_alias: cfg.role_alias.clone(),
                thing_name: cfg.thing_name.clone(),
                tls,
            }));
        }
        Ok(Self {
            sdk: loader.load().await,
            endpoint_url: cfg.endpoint_url.clone(),
            data_endpoint_url: cfg.data_endpoint_url.clone(),
            skew,
        })
    }

    pub fn region(&self) -> &str {
        self.sdk.region().map(Region::as_ref).unwrap_or("us-east-1")
    }

    /// True when pointed at a local fake (no public STUN then, and no internet).
    pub fn is_local(&self) -> bool {
        self.endpoint_url.is_some()
    }

    /// The KVS control-plane client.
    pub fn kinesis_video(&self) -> aws_sdk_kinesisvideo::Client {
        let mut b = aws_sdk_kinesisvideo::config::Builder::from(&self.sdk)
            .interceptor(skew::LearnSkew(self.skew.clone()));
        if let Some(url) = &self.endpoint_url {
            b = b.endpoint_url(url);
        }
        aws_sdk_kinesisvideo::Client::from_conf(b.build())
    }

    /// The signaling-channel client for a channel's HTTPS endpoint.
    pub fn signaling(&self, https_endpoint: &str) -> aws_sdk_kinesisvideosignaling::Client {
        let conf = aws_sdk_kinesisvideosignaling::config::Builder::from(&self.sdk)
            .interceptor(skew::LearnSkew(self.skew.clone()))
            .endpoint_url(https_endpoint)
            .build();
        aws_sdk_kinesisvideosignaling::Client::from_conf(conf)
    }

    /// The archived-media client (HLS, GetClip) for a stream's data endpoint.
    pub fn archived_media(&self, endpoint: &str) -> aws_sdk_kinesisvideoarchivedmedia::Client {
        let conf = aws_sdk_kinesisvideoarchivedmedia::config::Builder::from(&self.sdk)
            .interceptor(skew::LearnSkew(self.skew.clone()))
            .endpoint_url(endpoint)
            .build();
        aws_sdk_kinesisvideoarchivedmedia::Client::from_conf(conf)
    }

    /// The endpoint override (tests against local fakes), which then stands in for
    /// every data endpoint too.
    pub fn local_endpoint(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// The data-endpoint override (tests against local fakes).
    pub fn local_data_endpoint(&self) -> Option<&str> {
        self.data_endpoint_url.as_deref()
    }

    /// Current credentials (the provider refreshes them as they expire).
    pub async fn credentials(&self) -> Result<Credentials, AwsError> {
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| AwsError::Credentials("no credentials provider".into()))?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| AwsError::Credentials(error_chain(&e)))
    }
}

/// An error with its sources, on one line (SDK errors hide the cause in the chain).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
