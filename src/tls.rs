//! TLS settings: certificates and keys read from PEM files, the rustls server configuration
//! every TLS listener shares (TLS 1.2 and 1.3 only, the `ring` provider), optional client
//! certificates checked against a CA, and the common name of a verified client certificate
//! (the login under `tls_cert_login = "cn"`).
//!
//! Built on the starting thread (and again on SIGHUP, off the workers); the result is an
//! `Arc<rustls::ServerConfig>` that each worker holds and gives to every connection it
//! accepts on a TLS listener. The per-connection state machine is rustls' sans-io
//! `ServerConnection`, driven by `transport::Transport::Tls` on the worker's loop.
//!
//! Why rustls: a TLS stack is not something to write by hand; rustls is memory-safe, sans-io
//! (so it runs inside our mio loop without threads), and with `ring` it builds with a C
//! compiler only. PEM parsing is `rustls-pki-types` (the older rustls-pemfile is archived).
//!
//! Errors name the configuration key and the file: missing, unreadable, holding no
//! certificate or key, or a key that does not belong to the certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("key `{key}`: {file:?}: cannot read it: {why}")]
    Unreadable { key: &'static str, file: String, why: String },
    #[error("key `{key}`: {file:?}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)")]
    NoCertificate { key: &'static str, file: String },
    #[error("key `{key}`: {file:?}: no private key in it (expected a PEM PKCS#8, PKCS#1 or SEC1 key)")]
    NoKey { key: &'static str, file: String },
    #[error("key `tls_key`: {key_file:?} does not belong to the certificate in tls_cert = {cert_file:?}")]
    Mismatch { key_file: String, cert_file: String },
    #[error("key `{key}`: {file:?}: {why}")]
    Rejected { key: &'static str, file: String, why: String },
}

/// `tls_client_auth`: whether a TLS client must present a certificate signed by `tls_client_ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one still connects (and logs in as usual); one with a
    /// certificate the CA did not sign is refused.
    Optional,
    /// A client without a valid certificate fails the handshake.
    Required,
}

/// `tls_cert_login`: where a TLS client's login may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertLogin {
    /// CONNECT's `login` and `passcode` as on any port.
    #[default]
    None,
    /// A verified client certificate's subject common name is the login (no passcode needed);
    /// with a `user_file`, the name must be in it (its admin flag applies).
    Cn,
}

/// The TLS files a server needs, with the keys they came from (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub client_ca: Option<&'a str>,
    pub client_auth: ClientAuth,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &'static str, file: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|e| TlsError::Unreadable { key, file: file.into(), why: e.to_string() })
}

/// Every certificate in the PEM file `file` (named by config key `key`).
pub fn certificates(key: &'static str, file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, file)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Rejected { key, file: file.into(), why: format!("not PEM: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { key, file: file.into() });
    }
    Ok(certs)
}

fn private_key(key: &'static str, file: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey { key, file: file.into() })
}

/// The roots in a CA file.
pub fn roots(key: &'static str, file: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certificates(key, file)? {
        store.add(c).map_err(|e| TlsError::Rejected { key, file: file.into(), why: format!("not a usable CA certificate: {e}") })?;
    }
    Ok(store)
}

/// The server configuration every TLS listener uses.
pub fn server_config(f: &ServerFiles<'_>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certificates("tls_cert", f.cert)?;
    let key = private_key("tls_key", f.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rejected { key: "tls_cert", file: f.cert.into(), why: e.to_string() })?;
    let builder = match (f.client_auth, f.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Unreadable {
                key: "tls_client_ca",
                file: String::new(),
                why: "tls_client_auth needs tls_client_ca (the CA that signs client certificates)".into(),
            })
        }
        (auth, Some(ca)) => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots("tls_client_ca", ca)?), provider());
            let v = if auth == ClientAuth::Optional { v.allow_unauthenticated() } else { v };
            let v = v.build().map_err(|e| TlsError::Rejected { key: "tls_client_ca", file: ca.into(), why: e.to_string() })?;
            builder.with_client_cert_verifier(v)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch { key_file: f.key.into(), cert_file: f.cert.into() },
        e => TlsError::Rejected { key: "tls_key", file: f.key.into(), why: e.to_string() },
    })?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the CAs in `ca` (named by config key `key`), or, without
/// one, no CA at all (every handshake then fails: a link must name the CA it trusts).
pub fn client_config(key: &'static str, ca: Option<&str>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = match ca {
        Some(f) => roots(key, f)?,
        None => rustls::RootCertStore::empty(),
    };
    let c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rejected { key, file: ca.unwrap_or_default().into(), why: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(c))
}

/// One DER element at the start of `b`: (tag, contents, the rest after it).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject common name (OID 2.5.4.3) of a DER X.509 certificate, if it has one that is a
/// UTF-8, printable or IA5 string (the last CN if several).
pub fn common_name(cert: &[u8]) -> Option<String> {
    const SEQ: u8 = 0x30;
    const CN: [u8; 3] = [0x55, 0x04, 0x03];
    let (SEQ, cert, _) = der(cert)? else { return None };
    let (SEQ, mut tbs, _) = der(cert)? else { return None };
    // tbsCertificate: [0] version (optional), serial, signature, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (SEQ, mut subject, _) = der(tbs)? else { return None };
    let mut found = None;
    while !subject.is_empty() {
        let (_set, mut rdn, rest) = der(subject)?;
        subject = rest;
        while !rdn.is_empty() {
            let (_, attr, more) = der(rdn)?;
            rdn = more;
            let (0x06, oid, value) = der(attr)? else { continue };
            if oid == CN {
                let (tag, v, _) = der(value)?;
                if matches!(tag, 0x0c | 0x13 | 0x16) {
                    found = std::str::from_utf8(v).ok().map(str::to_string);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("romp-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn self_signed(cn: &str) -> (String, String) {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "romp tests");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_common_name_is_read_from_a_certificate() {
        let (pem, _) = self_signed("orders-svc");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("orders-svc"));
        // Truncated anywhere: no name and no panic.
        for cut in 0..der.len() {
            assert_eq!(common_name(&der[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let d = temp("errors");
        let (cert, key) = self_signed("a");
        let (_, other_key) = self_signed("b");
        let w = |name: &str, text: &str| {
            let p = d.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (cert, key, other, junk) = (w("cert.pem", &cert), w("key.pem", &key), w("other.pem", &other_key), w("junk.pem", "hello"));
        fn files<'a>(c: &'a str, k: &'a str) -> ServerFiles<'a> {
            ServerFiles { cert: c, key: k, client_ca: None, client_auth: ClientAuth::None }
        }
        assert!(server_config(&files(&cert, &key)).is_ok());
        let e = server_config(&files("/nonexistent/cert.pem", &key)).unwrap_err().to_string();
        assert!(e.contains("tls_cert") && e.contains("/nonexistent/cert.pem") && e.contains("cannot read"), "{e}");
        let e = server_config(&files(&junk, &key)).unwrap_err().to_string();
        assert!(e.contains("tls_cert") && e.contains("junk.pem") && e.contains("no certificate"), "{e}");
        let e = server_config(&files(&cert, &junk)).unwrap_err().to_string();
        assert!(e.contains("tls_key") && e.contains("junk.pem") && e.contains("no private key"), "{e}");
        let e = server_config(&files(&cert, &cert)).unwrap_err().to_string();
        assert!(e.contains("tls_key") && e.contains("no private key"), "{e}");
        let e = server_config(&files(&cert, &other)).unwrap_err().to_string();
        assert!(e.contains("does not belong") && e.contains("other.pem") && e.contains("cert.pem"), "{e}");
        let mut f = files(&cert, &key);
        f.client_auth = ClientAuth::Required;
        let e = server_config(&f).unwrap_err().to_string();
        assert!(e.contains("tls_client_ca"), "{e}");
        f.client_ca = Some(&junk);
        let e = server_config(&f).unwrap_err().to_string();
        assert!(e.contains("tls_client_ca") && e.contains("junk.pem"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
