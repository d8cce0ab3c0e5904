//! The GROS face's values, parsed so that a bad one cannot exist: project keys, agent names,
//! networks, BigBoat measurements, gatherer versions, and the salts with the hash they make.
//! Nothing here does I/O.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{is_name, string_newtype};

/// The longest project key, as upstream's controller takes it.
pub const MAX_PROJECT_KEY: usize = 20;
/// The longest agent name.
pub const MAX_AGENT_NAME: usize = 64;

/// A project key: upper-case letters only, 1 to 20 of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(String);

impl ProjectKey {
    pub fn parse(raw: &str) -> Result<ProjectKey, String> {
        if !is_name(raw, MAX_PROJECT_KEY, |b| b.is_ascii_uppercase()) {
            return Err("Project key must be all-uppercase, only alphabetic characters".into());
        }
        Ok(ProjectKey(raw.to_owned()))
    }
}

string_newtype!(ProjectKey, String);

/// An agent's name within its project: 1 to 64 ASCII letters, digits, `-` or `_`. The agent
/// of a project with a single agent is named after the project.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(raw: &str) -> Result<AgentName, String> {
        if !is_name(raw, MAX_AGENT_NAME, |b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
        }) {
            return Err("Agent name must be 1 to 64 letters, digits, '-' or '_' characters".into());
        }
        Ok(AgentName(raw.to_owned()))
    }

    /// The agent named after its project.
    pub fn of(project: &ProjectKey) -> AgentName {
        AgentName(project.0.clone())
    }
}

string_newtype!(AgentName, String);

/// The longest name of an uploaded file, as most file systems take a name.
pub const MAX_UPLOAD_NAME: usize = 255;

/// The name of a file uploaded into a project's upload directory: one path component, 1 to
/// 255 bytes, no `/`, no control character, neither `.` nor `..` nor starting with a dot (so
/// that no upload is hidden or names a directory).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadName(String);

impl UploadName {
    pub fn parse(raw: &str) -> Result<UploadName, String> {
        if raw.is_empty() || raw.len() > MAX_UPLOAD_NAME {
            return Err(format!("a file name has 1 to {MAX_UPLOAD_NAME} bytes"));
        }
        if raw.starts_with('.') {
            return Err(format!("{raw:?}: a file name may not start with a dot"));
        }
        if raw.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(format!(
                "{raw:?}: a file name may not hold a slash, a backslash or a control character"
            ));
        }
        Ok(UploadName(raw.to_owned()))
    }
}

string_newtype!(UploadName, String);

/// The entity id of an agent: `<PROJECT>.<agent>` (the dot is in neither part).
pub fn agent_id(project: &ProjectKey, agent: &AgentName) -> String {
    format!("{}.{}", project.0, agent.0)
}

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`), or one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network(IpNet);

impl Network {
    pub fn parse(raw: &str) -> Result<Network, String> {
        let bad = || format!("{raw:?} is not an address or a network such as 10.0.0.0/8");
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| bad())?,
            None => IpNet::from(address).prefix_len(),
        };
        IpNet::new(address, prefix).map(Network).map_err(|_| bad())
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 caller seen through an IPv6 socket is compared as IPv4.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&address)
    }
}

/// One BigBoat measurement, as `status.py` receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    /// `YYYY-MM-DD HH:MM:SS`, as the agent sent it.
    pub checked_time: String,
    pub ok: bool,
    pub value: Option<serde_json::Number>,
    pub max: Option<serde_json::Number>,
}

/// The most measurements one `status.py` POST may carry.
pub const MAX_MEASUREMENTS: usize = 1000;

/// Parses the `status` form field: a JSON list of measurements.
pub fn parse_measurements(raw: &str) -> Result<Vec<Measurement>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        name: String,
        checked_time: String,
        ok: bool,
        #[serde(default)]
        value: Option<serde_json::Number>,
        #[serde(default)]
        max: Option<serde_json::Number>,
    }
    let list: Vec<Raw> =
        serde_json::from_str(raw).map_err(|e| format!("Status must be a JSON list: {e}"))?;
    if list.len() > MAX_MEASUREMENTS {
        return Err(format!(
            "Status must hold at most {MAX_MEASUREMENTS} measurements"
        ));
    }
    list.into_iter()
        .map(|m| {
            chrono::NaiveDateTime::parse_from_str(&m.checked_time, "%Y-%m-%d %H:%M:%S").map_err(
                |_| {
                    format!(
                        "checked_time {:?} is not YYYY-MM-DD HH:MM:SS",
                        m.checked_time
                    )
                },
            )?;
            Ok(Measurement {
                name: m.name,
                checked_time: m.checked_time,
                ok: m.ok,
                value: m.value,
                max: m.max,
            })
        })
        .collect()
}

/// A gatherer's `version` parameter: `<gatherer version>-<branch>-<40 hex commit>`, or the
/// commit alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GathererVersion {
    pub commit: String,
}

impl GathererVersion {
    /// Parses `raw`, refusing a gatherer version other than `expected` as upstream does.
    pub fn parse(raw: &str, expected: &str) -> Result<GathererVersion, String> {
        let mut commit = raw;
        if raw.contains('-') {
            let parts: Vec<&str> = raw.split('-').collect();
            if parts[0] != expected {
                return Err(format!("Can only compare version {expected}"));
            }
            commit = parts[parts.len() - 1];
        }
        if commit.len() != 40
            || !commit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("Version hash must be a valid commit hexsha".into());
        }
        Ok(GathererVersion {
            commit: commit.to_owned(),
        })
    }
}

/// A project's salts (or the global ones): two random 64-hex-digit strings. Kept in the
/// secret store only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Salts {
    pub salt: String,
    pub pepper: String,
}

/// Never shown in logs or debug output.
impl std::fmt::Debug for Salts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salts(..)")
    }
}

impl Salts {
    /// New random salts from the operating system's generator.
    pub fn generate() -> Salts {
        use ssh_key::rand_core::{OsRng, RngCore};
        let mut bytes = [0u8; 64];
        OsRng.fill_bytes(&mut bytes);
        Salts {
            salt: hex::encode(&bytes[..32]),
            pepper: hex::encode(&bytes[32..]),
        }
    }

    /// The SHA-256 hex digest of salt, value and pepper: the pseudonym of `value`.
    pub fn encrypt(&self, value: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(self.salt.as_bytes());
        hash.update(value.as_bytes());
        hash.update(self.pepper.as_bytes());
        hex::encode(hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_keys_are_upper_case_letters() {
        assert!(ProjectKey::parse("PROJ").is_ok());
        for bad in ["", "proj", "PROJ1", "PRO J", &"A".repeat(21)] {
            assert!(ProjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AgentName::parse("agent-1").is_ok());
        assert!(AgentName::parse("a.b").is_err());
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let odd = Network::parse("192.168.0.0/23").unwrap();
        assert!(odd.contains("192.168.1.200".parse().unwrap()));
        assert!(!odd.contains("192.168.2.1".parse().unwrap()));
        assert!(Network::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        // Host bits after the prefix are ignored, as a network is written loosely.
        assert!(Network::parse("10.1.2.3/16")
            .unwrap()
            .contains("10.1.9.9".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(Network::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "host", "10.0.0.0/x"] {
            assert_eq!(
                Network::parse(bad),
                Err(format!(
                    "{bad:?} is not an address or a network such as 10.0.0.0/8"
                ))
            );
        }
    }

    #[test]
    fn versions_name_a_commit_of_the_expected_gatherer() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let parsed = GathererVersion::parse(&format!("0.0.3-master-{sha}"), "0.0.3").unwrap();
        assert_eq!(parsed.commit, sha);
        assert_eq!(
            GathererVersion::parse(&format!("0.0.2-master-{sha}"), "0.0.3"),
            Err("Can only compare version 0.0.3".into())
        );
        assert!(GathererVersion::parse("0.0.3-master-xyz", "0.0.3").is_err());
        assert!(GathererVersion::parse(sha, "0.0.3").is_ok());
    }

    #[test]
    fn salts_hash_salt_value_pepper() {
        let salts = Salts {
            salt: "s".into(),
            pepper: "p".into(),
        };
        assert_eq!(salts.encrypt("v"), hex::encode(Sha256::digest(b"svp")));
        assert_ne!(Salts::generate(), Salts::generate());
    }

    #[test]
    fn measurements_are_checked() {
        let ok = r#"[{"name":"cpu","checked_time":"2026-11-22 10:00:00","ok":true,"value":1.5,"max":4}]"#;
        assert_eq!(parse_measurements(ok).unwrap().len(), 1);
        assert!(parse_measurements("{}").is_err());
        assert!(parse_measurements(r#"[{"name":"cpu","checked_time":"now","ok":true}]"#).is_err());
        let one = r#"{"name":"m","checked_time":"2026-11-22 10:00:00","ok":true}"#;
        let list = |n: usize| format!("[{}]", vec![one; n].join(","));
        assert_eq!(
            parse_measurements(&list(MAX_MEASUREMENTS)).unwrap().len(),
            1000
        );
        assert_eq!(
            parse_measurements(&list(MAX_MEASUREMENTS + 1)),
            Err("Status must hold at most 1000 measurements".into())
        );
    }
}
