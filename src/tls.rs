//! TLS from PEM files. Mutual TLS clients: the server checked against a CA file, the
//! camera presenting its certificate and key (AWS IoT's MQTT and credentials provider
//! both use it). The local HTTPS server's configuration, certificate fingerprints, and
//! a client pinned to one certificate (for `edgecam` commands). Errors name the config
//! section and key to fix.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// IoT Core's ALPN protocol for MQTT over port 443.
pub const IOT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}.{key}: cannot read {path}: {error}")]
    Read {
        section: &'static str,
        key: &'static str,
        path: String,
        error: String,
    },
    #[error(
        "{section}.{key}: {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    KeyReadable {
        section: &'static str,
        key: &'static str,
        path: String,
        mode: u32,
    },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read_err(
    section: &'static str,
    key: &'static str,
    path: &Path,
    error: impl ToString,
) -> TlsError {
    TlsError::Read {
        section,
        key,
        path: path.display().to_string(),
        error: error.to_string(),
    }
}

/// Refuses a private key (config key `section.key`) that group or others may read.
pub fn check_key_mode(
    section: &'static str,
    key: &'static str,
    path: &Path,
) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| read_err(section, key, path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyReadable {
            section,
            key,
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Every certificate in a PEM file (at least one).
pub fn certs(
    section: &'static str,
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(section, key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(section, key, path, e))?;
    if certs.is_empty() {
        return Err(read_err(section, key, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The client TLS configuration from the three PEM files of config section `section`.
pub fn client_config(
    section: &'static str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    check_key_mode(section, "key", key)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(section, "ca", ca)? {
        roots.add(c)?;
    }
    let chain = certs(section, "cert", cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(section, "key", key, e))?;
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)?;
    if alpn {
        config.alpn_protocols = vec![IOT_ALPN.to_vec()];
    }
    Ok(Arc::new(config))
}

/// The server TLS configuration (HTTP/1.1) for a certificate chain and its key.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server configuration from PEM files named by config keys `section.cert_key` and
/// `section.key_key`; also the end-entity certificate, for its fingerprint.
pub fn server_files(
    section: &'static str,
    (cert_key, cert): (&'static str, &Path),
    (key_key, key): (&'static str, &Path),
) -> Result<(Arc<rustls::ServerConfig>, CertificateDer<'static>), TlsError> {
    check_key_mode(section, key_key, key)?;
    let chain = certs(section, cert_key, cert)?;
    let leaf = chain[0].clone();
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(section, key_key, key, e))?;
    Ok((server_config(chain, key_der)?, leaf))
}

/// A client for public servers (AWS endpoints, TURN): the system's CAs, with
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` first as OpenSSL reads them. Read once and shared.
pub fn public_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }))
}

/// A certificate's SHA-256 fingerprint as browsers show it: `AB:CD:…` (32 bytes).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// A client that trusts exactly one server certificate (the camera's own, read from
/// its file), whatever names it carries: how `edgecam` commands reach the local HTTPS
/// server, whose self-signed certificate no CA vouches for.
pub fn pinned_client_config(
    cert: CertificateDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, algorithms }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("camera.key");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_key_mode("mqtt", "key", &key).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_key_mode("mqtt", "key", &key).is_ok());
    }

    #[test]
    fn missing_files_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = client_config("mqtt", &dir.path().join("nope.pem"), &key, &key, false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mqtt.ca:"), "{err}");
    }
}
