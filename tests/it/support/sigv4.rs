//! An independent SigV4 verifier for the fakes of AWS services: recomputes the signature
//! the way the service does (canonical request → string to sign → HMAC chain) from the
//! request as received, for header-signed calls and for presigned URLs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "AKIDEDGECAMTEST";
pub const SECRET_KEY: &str = "edgecam/test/secret+key";
pub const SESSION_TOKEN: &str = "session/token+for=tests";

/// The test session token, or one the IoT fake issued from it (`SESSION_TOKEN/<n>`).
pub fn is_test_token(token: &str) -> bool {
    token == SESSION_TOKEN
        || token
            .strip_prefix(SESSION_TOKEN)
            .and_then(|n| n.strip_prefix('/'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// SigV4 URI encoding: everything but unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Percent-decoding of one query component.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, decoded, in order.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn canonical_query(params: &[(String, String)]) -> String {
    let mut enc: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn signature(
    date: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha_hex(canonical_request.as_bytes())
    );
    let k = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, service);
    let k = hmac(&k, "aws4_request");
    hex::encode(hmac(&k, &to_sign))
}

fn check_time(
    amz_date: &str,
    max_age_s: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let t = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| format!("bad X-Amz-Date {amz_date:?}"))?
        .and_utc();
    let age = (now - t).num_seconds();
    if age > max_age_s || age < -300 {
        return Err(format!("signature expired or from the future ({age} s)"));
    }
    Ok(())
}

/// Verifies a presigned GET (the KVS signaling URL): every parameter present, the
/// signature right, not expired, `host` the only signed header, the session token signed.
pub fn verify_presigned(
    host: &str,
    path: &str,
    query: &str,
    region: &str,
    service: &str,
) -> Result<Vec<(String, String)>, String> {
    let params = query_params(query);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .ok_or(format!("missing {k}"))
    };
    if get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err("X-Amz-Algorithm must be AWS4-HMAC-SHA256".into());
    }
    let amz_date = get("X-Amz-Date")?;
    let expires: i64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| "X-Amz-Expires is not a number")?;
    if !(1..=299).contains(&expires) {
        return Err(format!("X-Amz-Expires {expires} is outside 1..=299"));
    }
    check_time(&amz_date, expires, chrono::Utc::now())?;
    let credential = get("X-Amz-Credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let expected = [ACCESS_KEY, &amz_date[..8], region, service, "aws4_request"];
    if parts != expected {
        return Err(format!(
            "X-Amz-Credential {credential:?} is not for {expected:?}"
        ));
    }
    if get("X-Amz-SignedHeaders")? != "host" {
        return Err("X-Amz-SignedHeaders must be host".into());
    }
    if !is_test_token(&get("X-Amz-Security-Token")?) {
        return Err("X-Amz-Security-Token is wrong".into());
    }
    get("X-Amz-ChannelARN")?;
    let given = get("X-Amz-Signature")?;
    let signed: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .cloned()
        .collect();
    let canonical = format!(
        "GET\n{path}\n{}\nhost:{host}\n\nhost\n{}",
        canonical_query(&signed),
        sha_hex(b"")
    );
    let want = signature(&amz_date[..8], &amz_date, region, service, &canonical);
    if want != given {
        return Err("signature does not match".into());
    }
    Ok(params)
}

/// Verifies a header-signed request (`Authorization: AWS4-HMAC-SHA256 …`).
pub fn verify_headers(
    method: &str,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    (region, service): (&str, &str),
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization is not AWS4-HMAC-SHA256")?;
    let mut credential = "";
    let mut signed_headers = "";
    let mut given = "";
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = v;
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = v;
        } else if let Some(v) = part.strip_prefix("Signature=") {
            given = v;
        }
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("no x-amz-date")?;
    check_time(amz_date, 900, now)?;
    let parts: Vec<&str> = credential.split('/').collect();
    let expected = [ACCESS_KEY, &amz_date[..8], region, service, "aws4_request"];
    if parts != expected {
        return Err(format!("Credential {credential:?} is not for {expected:?}"));
    }
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if !token.is_some_and(is_test_token) {
        return Err("x-amz-security-token is missing or wrong".into());
    }
    for required in ["host", "x-amz-date"] {
        if !signed_headers.split(';').any(|h| h == required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| sha_hex(body));
    if payload_hash != "UNSIGNED-PAYLOAD" && payload_hash != sha_hex(body) && !body.is_empty() {
        return Err("x-amz-content-sha256 does not match the body".into());
    }
    let canonical_path: String = path.split('/').map(encode).collect::<Vec<_>>().join("/");
    let canonical = format!(
        "{method}\n{canonical_path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        canonical_query(&query_params(query))
    );
    let want = signature(&amz_date[..8], amz_date, region, service, &canonical);
    if want != given {
        return Err("signature does not match".into());
    }
    Ok(())
}

/// The environment of a daemon that signs with the test keys (and nothing from this
/// machine's AWS set-up) and trusts the test CA at `ca_pem`.
pub fn daemon_env(ca_pem: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("SSL_CERT_FILE", ca_pem.display().to_string()),
    ]
}
