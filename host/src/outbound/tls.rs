//! The one rustls client configuration for every outbound connection: TLS 1.2 as the explicit
//! minimum (rustls implements nothing older, but the floor is stated, not implied), the Mozilla
//! roots, plus an optional extra CA bundle for private or test CAs.

use anyhow::{bail, Context, Result};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reads every certificate of a PEM bundle; an unreadable or empty file is an error.
pub fn read_pem_bundle(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the extra CA bundle {}", path.display()))?;
    use rustls::pki_types::pem::PemObject as _;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if let Some(path) = extra_ca {
        for cert in read_pem_bundle(path)? {
            roots.add(cert).with_context(|| {
                format!("a certificate in {} is not a valid CA", path.display())
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .context("TLS 1.2/1.3 unsupported by the crypto provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bundle_is_a_clear_error() {
        let err = client_config(Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(format!("{err:#}").contains("cannot read the extra CA bundle /nonexistent/ca.pem"));
    }

    #[test]
    fn a_file_without_certificates_is_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n")?;
        let err = client_config(Some(&path)).expect_err("empty");
        assert!(
            format!("{err:#}").contains("holds no PEM certificate"),
            "{err:#}"
        );
        Ok(())
    }

    #[test]
    fn default_config_builds_with_the_extra_ca() -> Result<()> {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem())?;
        client_config(Some(&path))?;
        Ok(())
    }
}
