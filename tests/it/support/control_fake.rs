//! The KVS control-plane calls moto_server does not have, in front of it:
//! UpdateImageGenerationConfiguration, DescribeImageGenerationConfiguration and
//! UpdateNotificationConfiguration, SigV4 verified and checked against the API reference
//! (an existing stream, one of StreamName/StreamARN, ENABLED|DISABLED, an `s3://`
//! destination with its region, a sampling interval of 200–20000 ms, JPEG or PNG, JPEG
//! quality 1–100, sizes within 3840×2160, an SNS topic ARN). Every other call goes to moto
//! unchanged.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::sigv4;

#[derive(Default)]
struct Shared {
    calls: Vec<(String, Value)>,
    errors: Vec<String>,
    /// The image generation configuration set per stream.
    images: std::collections::HashMap<String, Value>,
}

#[derive(Clone)]
pub struct FakeControl {
    /// `aws.endpoint_url` for the daemon.
    pub url: String,
    moto: String,
    region: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakeControl {
    pub async fn start(moto_url: &str, region: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeControl {
            url: format!("http://{}", listener.local_addr().unwrap()),
            moto: moto_url.trim_start_matches("http://").to_owned(),
            region: region.to_owned(),
            shared: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// The request bodies of `op` calls answered so far.
    pub fn calls(&self, op: &str) -> Vec<Value> {
        let s = self.shared.lock().unwrap();
        s.calls
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn errors(&self) -> Vec<String> {
        self.shared.lock().unwrap().errors.clone()
    }

    fn refuse(&self, status: StatusCode, kind: &str, why: String) -> Response {
        self.shared
            .lock()
            .unwrap()
            .errors
            .push(format!("{kind}: {why}"));
        (
            status,
            [
                ("x-amzn-ErrorType", kind),
                ("content-type", "application/json"),
            ],
            json!({ "message": why }).to_string(),
        )
            .into_response()
    }

    /// Sends a request to moto as it came; its answer.
    async fn forward(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let Ok(tcp) = TcpStream::connect(&self.moto).await else {
            return (StatusCode::BAD_GATEWAY, "moto is down").into_response();
        };
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = send
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }

    /// Asks moto, under the caller's credential scope (moto keeps streams per region).
    async fn stream_exists(&self, name: &str, caller: &HeaderMap) -> bool {
        let body = Bytes::from(json!({ "StreamName": name }).to_string());
        let uri: Uri = "/describeStream".parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in ["authorization", "x-amz-date", "x-amz-security-token"] {
            if let Some(v) = caller.get(h) {
                headers.insert(h, v.clone());
            }
        }
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("host", self.moto.parse().unwrap());
        let r = self.forward(&Method::POST, &uri, &headers, body).await;
        r.status() == StatusCode::OK
    }
}

async fn handle(
    State(fake): State<FakeControl>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = match uri.path() {
        "/updateImageGenerationConfiguration" => "UpdateImageGenerationConfiguration",
        "/describeImageGenerationConfiguration" => "DescribeImageGenerationConfiguration",
        "/updateNotificationConfiguration" => "UpdateNotificationConfiguration",
        _ => return fake.forward(&method, &uri, &headers, body).await,
    };
    let signed = sigv4::verify_headers(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        &headers,
        &body,
        (&fake.region, "kinesisvideo"),
        chrono::Utc::now(),
    );
    if let Err(why) = signed {
        return fake.refuse(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!("{op}: {why}"),
        );
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let name = req["StreamName"].as_str().unwrap_or_default().to_owned();
    if name.is_empty() == req["StreamARN"].as_str().is_none() {
        let why = format!("{op}: exactly one of StreamName and StreamARN");
        return fake.refuse(StatusCode::BAD_REQUEST, "InvalidArgumentException", why);
    }
    if !fake.stream_exists(&name, &headers).await {
        let why = format!("{op}: no stream {name:?}");
        return fake.refuse(StatusCode::NOT_FOUND, "ResourceNotFoundException", why);
    }
    let checked = match op {
        "UpdateImageGenerationConfiguration" => check_images(&req["ImageGenerationConfiguration"]),
        "UpdateNotificationConfiguration" => check_notification(&req["NotificationConfiguration"]),
        _ => Ok(()),
    };
    if let Err(why) = checked {
        let why = format!("{op}: {why}");
        return fake.refuse(StatusCode::BAD_REQUEST, "InvalidArgumentException", why);
    }
    let mut s = fake.shared.lock().unwrap();
    s.calls.push((op.to_owned(), req.clone()));
    let answer = match op {
        "UpdateImageGenerationConfiguration" => {
            s.images
                .insert(name, req["ImageGenerationConfiguration"].clone());
            json!({})
        }
        "DescribeImageGenerationConfiguration" => {
            json!({ "ImageGenerationConfiguration": s.images.get(&name).cloned().unwrap_or(Value::Null) })
        }
        _ => json!({}),
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

fn check_images(c: &Value) -> Result<(), String> {
    let one_of = |key: &str, allowed: &[&str]| {
        let v = c[key].as_str().unwrap_or_default();
        if allowed.contains(&v) {
            Ok(())
        } else {
            Err(format!("{key} {v:?} is not one of {allowed:?}"))
        }
    };
    one_of("Status", &["ENABLED", "DISABLED"])?;
    one_of(
        "ImageSelectorType",
        &["SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP"],
    )?;
    one_of("Format", &["JPEG", "PNG"])?;
    let dest = &c["DestinationConfig"];
    let uri = dest["Uri"].as_str().unwrap_or_default();
    if !uri.starts_with("s3://")
        || dest["DestinationRegion"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    {
        return Err(format!("DestinationConfig {dest}"));
    }
    let interval = c["SamplingInterval"].as_i64().unwrap_or(0);
    if !(200..=20_000).contains(&interval) {
        return Err(format!("SamplingInterval {interval}"));
    }
    super::get_images::picture_options(c)
}

fn check_notification(c: &Value) -> Result<(), String> {
    let status = c["Status"].as_str().unwrap_or_default();
    let uri = c["DestinationConfig"]["Uri"].as_str().unwrap_or_default();
    let topic = uri.starts_with("arn:") && uri.contains(":sns:");
    if matches!(status, "ENABLED" | "DISABLED") && topic {
        Ok(())
    } else {
        Err(format!("NotificationConfiguration {c}"))
    }
}
