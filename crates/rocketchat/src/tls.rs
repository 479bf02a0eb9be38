//! TLS for the REST client and the WebSocket: rustls with ring, HTTP/1.1, and the platform's
//! trust store.
//!
//! Loading the system's CA certificates costs ~1 MiB of resident memory (reading and parsing
//! the bundle). A connector whose server is plain `http://` may still meet TLS (a redirect to
//! `https://`, an attachment stored elsewhere), so it gets a verifier that loads the trust
//! store at its first TLS handshake instead of never verifying. An `https://` connector loads
//! it at once, so a machine without CA certificates fails at start with a clear error rather
//! than at the first connection.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// When the platform's trust store is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustStore {
    /// Now: the server speaks TLS from the first request.
    Now,
    /// At the first TLS handshake, if there is one.
    WhenFirstNeeded,
}

impl TrustStore {
    /// `Now` for an `https://` base URL, `WhenFirstNeeded` otherwise.
    pub fn for_url(base: &str) -> TrustStore {
        let scheme = base.split_once("://").map_or("", |(scheme, _)| scheme);
        if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
            TrustStore::Now
        } else {
            TrustStore::WhenFirstNeeded
        }
    }
}

/// The rustls client configuration shared by REST and the WebSocket.
pub fn tls_config(trust: TrustStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        TrustStore::Now => Arc::new(Verifier::new(provider).map_err(|e| e.to_string())?),
        TrustStore::WhenFirstNeeded => Arc::new(DeferredVerifier::new(provider)),
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform verifier, built at the first certificate check. Until then only the
/// signature schemes are asked for, which come from the crypto provider alone.
#[derive(Debug)]
struct DeferredVerifier {
    provider: Arc<CryptoProvider>,
    platform: OnceLock<Result<Verifier, rustls::Error>>,
}

impl DeferredVerifier {
    fn new(provider: Arc<CryptoProvider>) -> Self {
        DeferredVerifier {
            provider,
            platform: OnceLock::new(),
        }
    }

    fn platform(&self) -> Result<&Verifier, rustls::Error> {
        self.platform
            .get_or_init(|| Verifier::new(self.provider.clone()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for DeferredVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.platform()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.platform()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.platform()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConnection, ServerConnection};

    /// A self-signed certificate for `localhost` that no trust store contains.
    const UNTRUSTED_CERT: &str = r"-----BEGIN CERTIFICATE-----
MIIB9zCCAZygAwIBAgIUK/gRN6NIDUN//0sgBWKfvRPHFB0wCgYIKoZIzj0EAwIw
NDESMBAGA1UECgwJYWNnIHRlc3RzMR4wHAYDVQQDDBV1bnRydXN0ZWQgdGVzdCBz
ZXJ2ZXIwIBcNMjYxMTI0MTQ0NjE2WhgPMjEyNjEwMzExNDQ2MTZaMDQxEjAQBgNV
BAoMCWFjZyB0ZXN0czEeMBwGA1UEAwwVdW50cnVzdGVkIHRlc3Qgc2VydmVyMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBPzk0Yc1V611jSNRaGpGT+V9Ks0nkH3+
+xwc/ECKIcQlENpuSt9CUPk1Jf7Wn4ZIYkBLU5VxAgQtYGh3JRkT8qOBiTCBhjAd
BgNVHQ4EFgQUnuGZHuAvtBaqSUL4dKxdMJDzn9wwHwYDVR0jBBgwFoAUnuGZHuAv
tBaqSUL4dKxdMJDzn9wwFAYDVR0RBA0wC4IJbG9jYWxob3N0MAwGA1UdEwEB/wQC
MAAwCwYDVR0PBAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMAoGCCqGSM49BAMC
A0kAMEYCIQC1oW8MMyBgrbZDqIBrBpGh3SDZXA+AbbGQ9/gllz7GagIhAOtxlIMh
jqCLYZn+Yo0qJZ13ALPjE+6kn098Sc1oFXLe
-----END CERTIFICATE-----";
    const UNTRUSTED_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFdSLVxYbnsjsMbi8
eICqSug8/QTRq18+SlSuED3MKfOhRANCAAQE/OTRhzVXrXWNI1FoakZP5X0qzSeQ
ff77HBz8QIohxCUQ2m5K30JQ+TUl/tafhkhiQEtTlXECBC1gaHclGRPy
-----END PRIVATE KEY-----";

    /// Runs a TLS handshake in memory between `client` and a server presenting the
    /// self-signed certificate; returns the client's error, if any.
    fn handshake_with_self_signed(client: rustls::ClientConfig) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = CertificateDer::from_pem_slice(UNTRUSTED_CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(UNTRUSTED_KEY.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let mut server = ServerConnection::new(Arc::new(server)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty() {
                server.read_tls(&mut wire.as_slice()).unwrap();
                // The server's own complaints do not matter here; the client's do.
                let _ = server.process_new_packets();
            }
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty() {
                client.read_tls(&mut wire.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake neither finished nor failed");
    }

    fn refused_for_its_certificate(outcome: Result<(), rustls::Error>) -> bool {
        match outcome {
            // `UnknownIssuer`, or whatever else building a path to a trusted root tripped on.
            Err(rustls::Error::InvalidCertificate(_)) => true,
            // A machine without any CA certificate refuses every server.
            Err(rustls::Error::General(reason)) => reason.contains("CA certificates"),
            _ => false,
        }
    }

    #[test]
    fn an_http_connector_loads_the_trust_store_only_at_its_first_handshake_and_still_verifies() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let deferred = Arc::new(DeferredVerifier::new(provider));
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(deferred.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        assert!(deferred.platform.get().is_none(), "loaded before any TLS");
        let outcome = handshake_with_self_signed(config);
        assert!(refused_for_its_certificate(outcome.clone()), "{outcome:?}");
        assert!(deferred.platform.get().is_some());
    }

    #[test]
    fn both_kinds_of_configuration_refuse_an_untrusted_server() {
        for trust in [TrustStore::Now, TrustStore::WhenFirstNeeded] {
            let Ok(config) = tls_config(trust) else {
                // `Now` on a machine without CA certificates: the error is the start's.
                assert_eq!(trust, TrustStore::Now);
                continue;
            };
            assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
            let outcome = handshake_with_self_signed(config);
            assert!(
                refused_for_its_certificate(outcome.clone()),
                "{trust:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn the_url_scheme_decides_when_the_trust_store_loads() {
        assert_eq!(
            TrustStore::for_url("https://chat.example.com"),
            TrustStore::Now
        );
        assert_eq!(
            TrustStore::for_url("HTTPS://chat.example.com"),
            TrustStore::Now
        );
        assert_eq!(
            TrustStore::for_url("wss://chat.example.com"),
            TrustStore::Now
        );
        assert_eq!(
            TrustStore::for_url("http://127.0.0.1:3000"),
            TrustStore::WhenFirstNeeded
        );
    }
}
