//! A cloud as a test run knows it: the identity endpoints and user names that go into the
//! tempest configuration fragment (`get-miniconf`), and the operator's extra tempest options.
//! It never holds a password: a key naming one is refused, so none can reach the event log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest name, endpoint, user name, option section, key or value, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;
/// The most extra tempest options (over all sections).
pub const MAX_OPTIONS: usize = 256;

/// A cloud's description, checked: it cannot exist with a password in it, an empty name, or
/// fields past the limits. Build one with [`Cloud::parse`]; deserializing goes through it too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CloudSpec")]
pub struct Cloud {
    name: String,
    identity_uri: String,
    identity_uri_v3: String,
    username: String,
    alt_username: String,
    admin_username: String,
    /// `{section: {key: value}}`, merged into the fragment over the defaults.
    tempest_options: BTreeMap<String, BTreeMap<String, String>>,
}

/// A cloud's description as a client or the configuration gives it, before it is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSpec {
    pub name: String,
    #[serde(default)]
    pub identity_uri: String,
    #[serde(default)]
    pub identity_uri_v3: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub alt_username: String,
    #[serde(default)]
    pub admin_username: String,
    #[serde(default)]
    pub tempest_options: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCloud {
    #[error("a cloud needs a name")]
    NoName,
    #[error("`{field}` is longer than {MAX_FIELD_BYTES} bytes")]
    TooLong { field: String },
    #[error("`{field}` contains a control character")]
    ControlCharacter { field: String },
    #[error("more than {MAX_OPTIONS} tempest options")]
    TooManyOptions,
    #[error("tempest option sections and keys must not be empty")]
    EmptyOption,
    /// Passwords stay with the client that runs tempest; a server that never receives them
    /// cannot leak them.
    #[error("the tempest option `{section}.{key}` names a password: passwords are never sent to or kept by the server")]
    Password { section: String, key: String },
}

fn check(field: &str, value: &str) -> Result<(), InvalidCloud> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(InvalidCloud::TooLong {
            field: field.to_owned(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidCloud::ControlCharacter {
            field: field.to_owned(),
        });
    }
    Ok(())
}

impl TryFrom<CloudSpec> for Cloud {
    type Error = InvalidCloud;
    fn try_from(spec: CloudSpec) -> Result<Self, InvalidCloud> {
        Cloud::parse(spec)
    }
}

impl Cloud {
    pub fn parse(spec: CloudSpec) -> Result<Cloud, InvalidCloud> {
        if spec.name.trim().is_empty() {
            return Err(InvalidCloud::NoName);
        }
        for (field, value) in [
            ("name", &spec.name),
            ("identity_uri", &spec.identity_uri),
            ("identity_uri_v3", &spec.identity_uri_v3),
            ("username", &spec.username),
            ("alt_username", &spec.alt_username),
            ("admin_username", &spec.admin_username),
        ] {
            check(field, value)?;
        }
        let count: usize = spec.tempest_options.values().map(BTreeMap::len).sum();
        if count > MAX_OPTIONS {
            return Err(InvalidCloud::TooManyOptions);
        }
        for (section, options) in &spec.tempest_options {
            check("tempest_options", section)?;
            for (key, value) in options {
                if section.is_empty() || key.is_empty() {
                    return Err(InvalidCloud::EmptyOption);
                }
                check(&format!("{section}.{key}"), key)?;
                check(&format!("{section}.{key}"), value)?;
                if key.to_ascii_lowercase().contains("password") {
                    return Err(InvalidCloud::Password {
                        section: section.clone(),
                        key: key.clone(),
                    });
                }
            }
        }
        Ok(Cloud {
            name: spec.name,
            identity_uri: spec.identity_uri,
            identity_uri_v3: spec.identity_uri_v3,
            username: spec.username,
            alt_username: spec.alt_username,
            admin_username: spec.admin_username,
            tempest_options: spec.tempest_options,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tempest.conf fragment `get-miniconf` serves: the 2014 server's defaults, then the
    /// operator's options, then the cloud's identity section, each overriding the one before.
    /// The defaults' `image_ssh_password` values are tempest's well-known image defaults, not
    /// any cloud's secret.
    pub fn miniconf(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut conf: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut set = |section: &str, key: &str, value: &str| {
            conf.entry(section.to_owned())
                .or_default()
                .insert(key.to_owned(), value.to_owned());
        };
        set("compute", "image_ssh_user", "root");
        set("compute", "image_ssh_password", "password");
        set("compute", "image_alt_ssh_user", "root");
        set("compute", "image_alt_ssh_password", "password");
        set("cli", "enabled", "False");
        for (section, options) in &self.tempest_options {
            for (key, value) in options {
                set(section, key, value);
            }
        }
        set("identity", "uri", &self.identity_uri);
        set("identity", "uri_v3", &self.identity_uri_v3);
        set("identity", "username", &self.username);
        set("identity", "alt_username", &self.alt_username);
        set("identity", "admin_username", &self.admin_username);
        conf
    }
}

impl From<Cloud> for CloudSpec {
    fn from(cloud: Cloud) -> CloudSpec {
        CloudSpec {
            name: cloud.name,
            identity_uri: cloud.identity_uri,
            identity_uri_v3: cloud.identity_uri_v3,
            username: cloud.username,
            alt_username: cloud.alt_username,
            admin_username: cloud.admin_username,
            tempest_options: cloud.tempest_options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializing_a_cloud_checks_it_as_parse_does() {
        let cloud: Cloud = serde_json::from_str(r#"{"name":"lab"}"#).unwrap();
        assert_eq!(cloud.name(), "lab");
        let stored = serde_json::to_string(&cloud).unwrap();
        assert_eq!(serde_json::from_str::<Cloud>(&stored).unwrap(), cloud);
        for bad in [
            r#"{"name":" "}"#,
            r#"{"name":"lab","tempest_options":{"auth":{"admin_password":"x"}}}"#,
            r#"{"name":"lab","username":"a\nb"}"#,
        ] {
            assert!(serde_json::from_str::<Cloud>(bad).is_err(), "{bad}");
        }
    }
}
