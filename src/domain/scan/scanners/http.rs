//! The `http` scanner: one GET on each `url` asset (and on `http://<name>/` for an `fqdn`), not
//! following redirects, whose answer's headers give the findings: security headers missing
//! (HSTS over https, CSP, X-Frame-Options, X-Content-Type-Options), a server or framework
//! banner that discloses a version, and targets that do not answer. A certificate the scanner
//! cannot verify (self-signed, expired) does not stop it: a scanner reports, it does not
//! refuse. It reads headers only, never the body.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use awc::http::header::HeaderMap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::mpsc;

use super::values::{report, Ended, HttpSettings, Job, Reported};
use crate::domain::scan::Progress;
use crate::domain::scan::{Asset, Confidence, Datatype, Finding, Severity, Target};

/// The URL a GET goes to for an asset.
pub fn url_of(asset: &Asset) -> Result<String, String> {
    let value = asset.value.trim();
    match asset.datatype {
        Datatype::Url => {
            let parsed: awc::http::Uri = value
                .parse()
                .map_err(|_| format!("asset {value:?} is not a URL"))?;
            match parsed.scheme_str() {
                Some("http" | "https") if parsed.host().is_some() => Ok(value.to_owned()),
                _ => Err(format!(
                    "asset {value:?} is not an http:// or https:// URL with a host"
                )),
            }
        }
        Datatype::Fqdn | Datatype::Domain => {
            let url = format!("http://{value}/");
            url.parse::<awc::http::Uri>()
                .map_err(|_| format!("asset {value:?} is not a host name"))?;
            Ok(url)
        }
        other => Err(format!(
            "asset {value:?}: the http scanner cannot scan a {}",
            other.as_str()
        )),
    }
}

/// Checks that every asset gives a URL.
pub fn check(assets: &[Asset]) -> Result<(), String> {
    assets.iter().try_for_each(|asset| url_of(asset).map(drop))
}

/// Accepts any certificate, while still checking the handshake's signatures with it: the
/// scanner looks at what a server answers, whoever signed its certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration that takes any certificate (also the `nmap` scanner's, for
/// banners).
pub(super) fn any_certificate_tls() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// A client that does not follow redirects and takes any certificate.
fn client(timeout: Duration) -> Result<awc::Client, String> {
    let tls = any_certificate_tls()?;
    Ok(awc::Client::builder()
        .connector(
            awc::Connector::new()
                .rustls_0_23(Arc::new(tls))
                .timeout(timeout),
        )
        .timeout(timeout)
        .disable_redirects()
        .finish())
}

/// GETs each asset's URL in turn.
pub async fn scan(settings: &HttpSettings, job: &Job, progress: &mpsc::Sender<Reported>) -> Ended {
    let timeout = settings.request_timeout;
    let client = match client(timeout) {
        Ok(client) => client,
        Err(reason) => {
            return Ended {
                result: Err(reason),
                raw: Vec::new(),
            }
        }
    };
    let mut raw = Vec::new();
    for (i, asset) in job.assets.iter().enumerate() {
        let url = match url_of(asset) {
            Ok(url) => url,
            Err(reason) => {
                return Ended {
                    result: Err(reason),
                    raw,
                }
            }
        };
        let mut text = format!("GET {url}\n");
        let findings = match client.get(&url).send().await {
            Ok(response) => {
                let _ = writeln!(text, "{:?} {}", response.version(), response.status());
                for (name, value) in response.headers() {
                    let _ = writeln!(
                        text,
                        "{name}: {}",
                        String::from_utf8_lossy(value.as_bytes())
                    );
                }
                examine(asset, &url, response.status().as_u16(), response.headers())
            }
            Err(error) => {
                let _ = writeln!(text, "no answer: {error}");
                vec![unreachable(asset, &url, &error.to_string())]
            }
        };
        raw.push((format!("http/{}.txt", i + 1), text.into_bytes()));
        for finding in findings {
            if !report(progress, Progress::Finding(Box::new(finding))).await {
                return stopped(raw);
            }
        }
        if !report(progress, Progress::AssetDone(asset.value.clone())).await {
            return stopped(raw);
        }
    }
    Ended {
        result: Ok(()),
        raw,
    }
}

fn stopped(raw: Vec<(String, Vec<u8>)>) -> Ended {
    Ended {
        result: Err("stopped".into()),
        raw,
    }
}

fn finding(asset: &Asset, url: &str, severity: Severity, kind: &str) -> Finding {
    Finding {
        severity,
        confidence: Confidence::Certain,
        title: String::new(),
        description: String::new(),
        solution: "n/a".into(),
        kind: kind.into(),
        target: Target {
            addr: vec![asset.value.clone()],
            protocol: Some(
                if url.starts_with("https:") {
                    "https"
                } else {
                    "http"
                }
                .into(),
            ),
            port_id: None,
            port_type: None,
        },
        raw: None,
        tags: vec!["http".into()],
        links: Vec::new(),
        vuln_refs: Default::default(),
    }
}

/// The findings an answer's headers give.
pub fn examine(asset: &Asset, url: &str, status: u16, headers: &HeaderMap) -> Vec<Finding> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut findings = Vec::new();
    let mut status_finding = finding(asset, url, Severity::Info, "http_status");
    status_finding.title = format!("'{url}' answers HTTP {status}");
    status_finding.description = format!("A GET on {url} answered with the status {status}.");
    status_finding.raw = Some(serde_json::json!({ "url": url, "status": status }).to_string());
    findings.push(status_finding);

    let missing = |name: &str, why: &str, solution: &str, link: &str| {
        let mut f = finding(asset, url, Severity::Low, "http_missing_header");
        f.title = format!("Missing security header '{name}' on '{url}'");
        f.description = format!("The answer from {url} has no {name} header. {why}");
        f.solution = solution.into();
        f.links = vec![link.into()];
        f.raw = Some(serde_json::json!({ "url": url, "header": name }).to_string());
        f
    };
    if url.starts_with("https:") && header("strict-transport-security").is_none() {
        findings.push(missing(
            "Strict-Transport-Security",
            "Browsers may be led to reach the site over plain HTTP.",
            "Send Strict-Transport-Security with a max-age of at least six months.",
            "https://developer.mozilla.org/docs/Web/HTTP/Headers/Strict-Transport-Security",
        ));
    }
    let csp = header("content-security-policy");
    if csp.is_none() {
        findings.push(missing(
            "Content-Security-Policy",
            "Nothing limits where scripts and other content may come from.",
            "Send a Content-Security-Policy suited to the site.",
            "https://developer.mozilla.org/docs/Web/HTTP/CSP",
        ));
    }
    let frames_limited = csp.is_some_and(|csp| csp.contains("frame-ancestors"));
    if header("x-frame-options").is_none() && !frames_limited {
        findings.push(missing(
            "X-Frame-Options",
            "Other sites may frame these pages (clickjacking).",
            "Send X-Frame-Options: DENY (or SAMEORIGIN), or a CSP frame-ancestors directive.",
            "https://developer.mozilla.org/docs/Web/HTTP/Headers/X-Frame-Options",
        ));
    }
    if !header("x-content-type-options").is_some_and(|v| v.trim().eq_ignore_ascii_case("nosniff")) {
        findings.push(missing(
            "X-Content-Type-Options",
            "Browsers may guess content types (MIME sniffing).",
            "Send X-Content-Type-Options: nosniff.",
            "https://developer.mozilla.org/docs/Web/HTTP/Headers/X-Content-Type-Options",
        ));
    }
    for name in ["server", "x-powered-by", "x-aspnet-version"] {
        let Some(banner) = header(name) else {
            continue;
        };
        let versioned = banner.chars().any(|c| c.is_ascii_digit());
        let severity = if versioned {
            Severity::Low
        } else {
            Severity::Info
        };
        let mut f = finding(asset, url, severity, "http_banner");
        f.title = if versioned {
            format!("'{url}' discloses its software version in {name}: {banner}")
        } else {
            format!("'{url}' discloses its software in {name}: {banner}")
        };
        f.description = format!(
            "The {name} header of {url} reads {banner:?}, which tells an attacker what \
             software{} runs there.",
            if versioned { " and which version" } else { "" }
        );
        f.solution = format!("Remove the {name} header, or at least the version it shows.");
        f.raw =
            Some(serde_json::json!({ "url": url, "header": name, "value": banner }).to_string());
        findings.push(f);
    }
    findings
}

fn unreachable(asset: &Asset, url: &str, error: &str) -> Finding {
    let mut f = finding(asset, url, Severity::Info, "http_unreachable");
    f.title = format!("'{url}' is unreachable");
    f.description = format!("A GET on {url} got no answer: {error}.");
    f.solution = "Check that the target is up and reachable from the scanner.".into();
    f.raw = Some(serde_json::json!({ "url": url, "error": error }).to_string());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scan::scanners::values::test_asset as asset;
    use awc::http::header::{HeaderName, HeaderValue};

    #[test]
    fn urls_come_from_url_and_fqdn_assets() {
        assert_eq!(
            url_of(&asset("https://x.example/a?b", Datatype::Url)).unwrap(),
            "https://x.example/a?b"
        );
        assert_eq!(
            url_of(&asset("x.example", Datatype::Fqdn)).unwrap(),
            "http://x.example/"
        );
        for (value, datatype) in [
            ("ftp://x.example/", Datatype::Url),
            ("not a url", Datatype::Url),
            ("/relative", Datatype::Url),
            ("10.0.0.1", Datatype::Ip),
        ] {
            assert!(url_of(&asset(value, datatype)).is_err(), "{value}");
        }
    }

    #[test]
    fn headers_give_the_findings() {
        let url = "https://x.example/";
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("server", "nginx"),
            ("x-powered-by", "PHP/8.1.2"),
            ("x-content-type-options", "NOSNIFF"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let findings = examine(&asset(url, Datatype::Url), url, 302, &headers);
        let kinds: Vec<(&str, Severity)> = findings
            .iter()
            .map(|f| (f.kind.as_str(), f.severity))
            .collect();
        assert_eq!(
            kinds,
            [
                ("http_status", Severity::Info),
                ("http_missing_header", Severity::Low),
                ("http_missing_header", Severity::Low),
                ("http_missing_header", Severity::Low),
                ("http_banner", Severity::Info),
                ("http_banner", Severity::Low),
            ]
        );
        assert!(findings[1].title.contains("Strict-Transport-Security"));
        assert!(findings[5].title.contains("PHP/8.1.2"));
        assert_eq!(findings[0].target.protocol.as_deref(), Some("https"));
    }
}
