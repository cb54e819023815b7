//! `[aws]`: the AWS account and device identity used by the cloud parts (KVS signaling).

use serde::{Deserialize, Serialize};

/// `[aws]`: where the camera's AWS credentials come from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Aws {
    /// AWS region of the camera's KVS resources. Default "us-east-1".
    pub region: String,
    /// Credentials source: "default" is the AWS SDK chain (AWS_ACCESS_KEY_ID… in the
    /// environment, then ~/.aws profiles), meant for development. Default "default".
    pub credentials: String,
    /// The camera's IoT thing name; names the signaling channel unless
    /// `live.channel_name` is set. Default empty.
    pub thing_name: String,
    /// Overrides the KVS control-plane endpoint (for tests against local fakes only).
    /// Default unset.
    pub endpoint_url: Option<String>,
}

impl Default for Aws {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            credentials: "default".into(),
            thing_name: String::new(),
            endpoint_url: None,
        }
    }
}

impl Aws {
    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        let region_ok = !self.region.is_empty()
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            bad(
                "aws",
                "region",
                format!(
                    "must be a region name such as \"eu-west-1\", got {:?}",
                    self.region
                ),
            );
        }
        if self.credentials != "default" {
            bad(
                "aws",
                "credentials",
                format!(
                    "must be \"default\" (the IoT credentials provider comes with cloud upload), got {:?}",
                    self.credentials
                ),
            );
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bad(
                    "aws",
                    "endpoint_url",
                    format!("must be an http:// or https:// URL, got {url:?}"),
                );
            }
        }
    }
}
