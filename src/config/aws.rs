//! `[aws]`: the AWS account and device identity used by the cloud parts (KVS signaling).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[aws]`: where the camera's AWS credentials come from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Aws {
    /// AWS region of the camera's KVS resources. Default "us-east-1".
    pub region: String,
    /// Credentials source: "iot" is the AWS IoT credentials provider (mutual TLS with
    /// the camera's certificate; what a camera in the field uses); "default" is the AWS
    /// SDK chain (AWS_ACCESS_KEY_ID… in the environment, then ~/.aws profiles), for
    /// development. Default "default".
    pub credentials: CredentialSource,
    /// IoT credentials endpoint, `<prefix>.credentials.iot.<region>.amazonaws.com`
    /// (`aws iot describe-endpoint --endpoint-type iot:CredentialProvider`). Default empty.
    pub iot_credentials_endpoint: String,
    /// IoT role alias whose role the camera assumes. Default empty.
    pub role_alias: String,
    /// PEM files for the IoT credentials provider: the endpoint's CA, the camera's
    /// certificate and its private key (mode 0600). Default empty.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The camera's IoT thing name; names the signaling channel unless
    /// `live.channel_name` is set. Default empty.
    pub thing_name: String,
    /// Overrides the KVS control-plane endpoint (for tests against local fakes only).
    /// Default unset.
    pub endpoint_url: Option<String>,
    /// Overrides every stream data endpoint (PutMedia, HLS, GetClip) for tests against
    /// local fakes only; `endpoint_url` stands in when unset. Default unset.
    pub data_endpoint_url: Option<String>,
}

/// `aws.credentials`: where the camera's AWS credentials come from.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// The AWS SDK's default chain (environment, then ~/.aws).
    Default,
    /// The AWS IoT credentials provider, with the camera's certificate.
    Iot,
}

impl Default for Aws {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            credentials: CredentialSource::Default,
            iot_credentials_endpoint: String::new(),
            role_alias: String::new(),
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            thing_name: String::new(),
            endpoint_url: None,
            data_endpoint_url: None,
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
        match self.credentials {
            CredentialSource::Default => {}
            CredentialSource::Iot => {
                let required = [
                    (
                        "iot_credentials_endpoint",
                        self.iot_credentials_endpoint.is_empty(),
                    ),
                    ("role_alias", self.role_alias.is_empty()),
                    ("thing_name", self.thing_name.is_empty()),
                    ("ca", self.ca.as_os_str().is_empty()),
                    ("cert", self.cert.as_os_str().is_empty()),
                    ("key", self.key.as_os_str().is_empty()),
                ];
                for (key, missing) in required {
                    if missing {
                        bad(
                            "aws",
                            key,
                            "is required when aws.credentials = \"iot\"".into(),
                        );
                    }
                }
            }
        }
        for (key, url) in [
            ("endpoint_url", &self.endpoint_url),
            ("data_endpoint_url", &self.data_endpoint_url),
        ] {
            let Some(url) = url else { continue };
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bad(
                    "aws",
                    key,
                    format!("must be an http:// or https:// URL, got {url:?}"),
                );
            }
        }
    }
}
