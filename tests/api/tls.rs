//! TLS on the listener: a real handshake with a self-signed certificate, as GROS clients make
//! it, against `annals serve` as a child process; and clear errors for bad TLS settings.

use crate::common;

use rustls::pki_types::CertificateDer;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A GET over TLS, trusting only `der`; the whole answer.
fn https_get(address: &str, der: CertificateDer<'static>, path: &str) -> String {
    let mut connection = common::tls::client(der);
    let mut tcp = TcpStream::connect(address).unwrap();
    let mut tls = rustls::Stream::new(&mut connection, &mut tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response);
    response
}

/// `annals serve` with TLS on the listener whose settings are the variables `ANNALS_{SECTION}_…`.
fn serve_with_tls(
    dir: &std::path::Path,
    section: &str,
) -> (common::Served, CertificateDer<'static>) {
    let (cert, key, der) = common::tls::self_signed(dir);
    let (cert_var, key_var) = (
        format!("ANNALS_{section}_TLS_CERT"),
        format!("ANNALS_{section}_TLS_KEY"),
    );
    let envs = [
        (cert_var.as_str(), cert.to_str().unwrap()),
        (key_var.as_str(), key.to_str().unwrap()),
    ];
    let served = common::serve_data(&dir.join("log"), None, &[], &envs).expect("the server starts");
    (served, der)
}

/// Serves with TLS on the own listener of the face `section` (which `listener` picks) and GETs
/// `path` there: the answer must be a 200 that holds `holds`.
fn own_listener_speaks_https(
    section: &str,
    listener: fn(&common::Served) -> Option<String>,
    path: &str,
    holds: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let (served, der) = serve_with_tls(dir.path(), section);
    let address = listener(&served).expect("the face's own listener");
    let response = https_get(&address, der, path);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(holds), "{response}");
}

#[test]
fn a_faces_own_listener_speaks_https_too() {
    own_listener_speaks_https(
        "PARTISCI",
        |served| served.partisci.clone(),
        "/api/v1/_partisci/",
        "\"version\"",
    );
}

#[test]
fn the_workflow_faces_own_listener_speaks_https_too() {
    own_listener_speaks_https(
        "HPCWAAS",
        |served| served.hpcwaas.clone(),
        "/workflows",
        "{\"workflows\":[]}",
    );
}

#[test]
fn the_listener_speaks_https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (served, der) = serve_with_tls(dir.path(), "HTTP");

    let response = https_get(&served.address, der, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&served.address).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut bytes = Vec::new();
    let _ = plain.read_to_end(&mut bytes);
    assert!(!String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 200"));

    drop(served);
}

#[test]
fn bad_tls_settings_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = common::tls::self_signed(dir.path());
    let missing = dir.path().join("missing.pem");
    for (envs, says) in [
        (
            vec![("ANNALS_HTTP_TLS_CERT", cert.to_str().unwrap())],
            "give both or neither".to_owned(),
        ),
        (
            vec![
                ("ANNALS_HTTP_TLS_CERT", missing.to_str().unwrap()),
                ("ANNALS_HTTP_TLS_KEY", key.to_str().unwrap()),
            ],
            format!("cannot read {}", missing.display()),
        ),
        (
            vec![
                ("ANNALS_HTTP_TLS_CERT", key.to_str().unwrap()),
                ("ANNALS_HTTP_TLS_KEY", key.to_str().unwrap()),
            ],
            format!("{} holds no PEM certificate", key.display()),
        ),
        (
            vec![
                ("ANNALS_HTTP_TLS_CERT", cert.to_str().unwrap()),
                ("ANNALS_HTTP_TLS_KEY", cert.to_str().unwrap()),
            ],
            format!("{} holds no PEM private key", cert.display()),
        ),
    ] {
        let error = common::serve_data(&dir.path().join("log"), None, &[], &envs)
            .err()
            .expect("the server refuses to start");
        assert!(error.contains(&says), "expected {says:?} in: {error}");
    }
}
