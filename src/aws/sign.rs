//! SigV4 for the calls the SDK does not make (pure): the presigned KVS signaling
//! WebSocket URL, and the signed headers of a request whose body is streamed (PutMedia).
//!
//! Presigned: `GET wss://<endpoint>/?X-Amz-ChannelARN=<arn>&X-Amz-Algorithm=…&X-Amz-Signature=…`:
//! service `kinesisvideo`, signed header `host` only, empty-payload hash, the session
//! token inside the signed query, valid for at most 299 s.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;

use super::AwsError;

/// How long a presigned URL is valid (the service's limit is 299 s).
pub const EXPIRES: Duration = Duration::from_secs(299);

/// Percent-encodes everything but SigV4's unreserved characters.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The presigned master URL for `channel_arn` at `endpoint` (`wss://host[:port]`).
pub fn master_url(
    endpoint: &str,
    channel_arn: &str,
    creds: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<String, AwsError> {
    let base = format!(
        "{}/?X-Amz-ChannelARN={}",
        endpoint.trim_end_matches('/'),
        uri_encode(channel_arn)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES);
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kinesisvideo")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| AwsError::Sign(e.to_string()))?
        .into();
    let request = SignableRequest::new("GET", &base, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| AwsError::Sign(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| AwsError::Sign(e.to_string()))?
        .into_parts();
    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&uri_encode(value));
    }
    Ok(url)
}

/// Signs `req` for `service` in its headers, with the payload hashed as the empty string
/// (`x-amz-content-sha256`): the body is streamed and not known yet. `Transfer-Encoding`
/// is hop-by-hop and left out of the signature.
pub fn sign_streamed<B>(
    req: &mut http::Request<B>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), AwsError> {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| AwsError::Sign(e.to_string()))?
        .into();
    let url = req.uri().to_string();
    let method = req.method().as_str().to_owned();
    let headers = req
        .headers()
        .iter()
        .filter(|(k, _)| *k != "transfer-encoding")
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
    let signable = SignableRequest::new(&method, &url, headers, SignableBody::Bytes(&[]))
        .map_err(|e| AwsError::Sign(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| AwsError::Sign(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str) -> Vec<(String, String)> {
        url.split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn presigned_url_carries_what_kvs_checks() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("tok/en+=".into()), None, "t");
        // 2026-11-21T10:00:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_255_200);
        let arn = "arn:aws:kinesisvideo:eu-west-1:123456789012:channel/cam-1/1700000000000";
        let url = master_url("wss://v-1.example:443", arn, &creds, "eu-west-1", now).unwrap();
        assert!(url.starts_with("wss://v-1.example:443/?X-Amz-ChannelARN=arn%3Aaws%3Akinesisvideo%3Aeu-west-1%3A123456789012%3Achannel%2Fcam-1%2F1700000000000&"), "{url}");
        let q = query(&url);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20261121%2Feu-west-1%2Fkinesisvideo%2Faws4_request")
        );
        assert_eq!(get("X-Amz-Date"), Some("20261121T100000Z"));
        assert_eq!(get("X-Amz-Expires"), Some("299"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(get("X-Amz-Security-Token"), Some("tok%2Fen%2B%3D"));
        let sig = get("X-Amz-Signature").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
        // Deterministic for the same inputs; the time is part of the signature.
        let again = master_url("wss://v-1.example:443", arn, &creds, "eu-west-1", now).unwrap();
        assert_eq!(url, again);
        let later = master_url(
            "wss://v-1.example:443",
            arn,
            &creds,
            "eu-west-1",
            now + Duration::from_secs(1),
        )
        .unwrap();
        assert_ne!(url, later);
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(uri_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(uri_encode("a b/c:d+e="), "a%20b%2Fc%3Ad%2Be%3D");
    }
}
