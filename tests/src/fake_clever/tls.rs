//! Optional TLS: a throw-away CA made at start-up signs a server certificate for `localhost`,
//! `127.0.0.1`, `::1` and any extra names asked for. Clients trust the CA's PEM, never a system store.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

pub(crate) struct TestTls {
    pub(crate) ca_pem: String,
    pub(crate) ca_der: Vec<u8>,
    pub(crate) server_config: Arc<ServerConfig>,
    /// The same as files, for a server that is not ours (redis-server's `tls-*-file`).
    pub(crate) pem: TestPem,
}

pub(crate) struct TestPem {
    pub(crate) ca: String,
    /// The server certificate followed by the CA's.
    pub(crate) cert: String,
    pub(crate) key: String,
}

pub(crate) fn make_test_tls(extra_names: &[String]) -> anyhow::Result<TestTls> {
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    names.extend(extra_names.iter().map(String::as_str));
    make_test_tls_for("clever-auth fake Clever test CA", "localhost", &names)
}

/// The same, with the CA's common name, the server certificate's common name and its subject
/// alternative names (DNS names or IP addresses) chosen by the caller. Shared with
/// `fake_azure`, whose Key Vault fake also needs `<name>.vault.azure.net`.
pub(crate) fn make_test_tls_for(
    ca_common_name: &str,
    leaf_common_name: &str,
    subject_alt_names: &[&str],
) -> anyhow::Result<TestTls> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, ca_common_name);
    ca_params.distinguished_name = ca_name;
    let ca_key = KeyPair::generate().context("generating the test CA key")?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the test CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params = CertificateParams::new(
        subject_alt_names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>(),
    )?;
    let mut leaf_name = DistinguishedName::new();
    leaf_name.push(DnType::CommonName, leaf_common_name);
    leaf_params.distinguished_name = leaf_name;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().context("generating the server key")?;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .context("signing the server certificate")?;

    let pem = TestPem {
        ca: ca_cert.pem(),
        cert: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key: leaf_key.serialize_pem(),
    };
    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    // An explicit provider: the process-wide default may be unset or be another backend.
    let mut server_config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("installing the server certificate")?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(TestTls {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        server_config: Arc::new(server_config),
        pem,
    })
}
