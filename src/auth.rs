//! Accounts and authentication: who is calling, and whether they may. Passwords are kept only
//! as argon2 hashes and bearer tokens only as SHA-256 hashes; neither ever reaches the event log,
//! a log line or a response. It knows nothing of HTTP beyond the `Authorization` header's text.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One account, as configured under `[[accounts]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    /// An argon2 hash in PHC form, as `annals hash-password` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// SHA-256 hashes (hex) of bearer tokens, as `annals new-token` prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_sha256: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May use the event API, replays and destructive operations.
    Admin,
}

/// Who may use one part of the API once any account is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, without credentials.
    Anyone,
    /// Any account.
    Account,
    /// Accounts with the admin role.
    Admin,
}

/// Who is calling, once authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account, or `None` when auth is off or the part is open to anyone.
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials are required (HTTP Basic or a bearer token)")]
    Missing,
    #[error("the credentials are not valid")]
    Invalid,
    #[error("account {user} may not do this: it needs the {needed:?} access")]
    Forbidden { user: String, needed: Access },
}

/// The most checked credentials remembered, so that a follower's repeated requests (or a
/// client's repeated wrong ones) do not each pay for an argon2 verification.
const MAX_REMEMBERED: usize = 10_000;

/// The configured accounts, checked once.
pub struct Auth {
    accounts: Vec<Account>,
    /// SHA-256 of an `Authorization` value already checked, to the account's index (`None`:
    /// not valid). Only hashes of credentials are kept, never the credentials.
    verified: Mutex<HashMap<[u8; 32], Option<usize>>>,
}

impl Auth {
    /// Checks every account: a unique name, a password hash that parses, tokens in hex.
    pub fn new(accounts: Vec<Account>) -> Result<Auth, String> {
        let mut names = std::collections::HashSet::new();
        for account in &accounts {
            if account.name.is_empty() || account.name.contains(':') {
                return Err(format!(
                    "account name {:?} must be non-empty and without ':'",
                    account.name
                ));
            }
            if !names.insert(account.name.as_str()) {
                return Err(format!("account {} is configured twice", account.name));
            }
            if let Some(hash) = &account.password_hash {
                PasswordHash::new(hash).map_err(|e| {
                    format!(
                        "account {}: password_hash is not an argon2 hash: {e}",
                        account.name
                    )
                })?;
            }
            for token in &account.token_sha256 {
                if token.len() != 64 || hex::decode(token).is_err() {
                    return Err(format!(
                        "account {}: token_sha256 must be 64 hex digits",
                        account.name
                    ));
                }
            }
        }
        Ok(Auth {
            accounts,
            verified: Mutex::default(),
        })
    }

    /// Auth is on once any account is configured.
    pub fn enabled(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// [`Auth::authorize`]'s answer when it needs no verification (no credentials needed or
    /// given, or these checked before); `None` when it does. Cheap: call it anywhere.
    pub fn known(
        &self,
        authorization: Option<&str>,
        access: Access,
    ) -> Option<Result<Caller, AuthError>> {
        let Some(authorization) = authorization else {
            return Some(self.authorize(None, access));
        };
        if !self.enabled() || access == Access::Anyone {
            return Some(Ok(Caller { user: None }));
        }
        let index = *self.remembered().get(&credentials_key(authorization))?;
        Some(
            index
                .ok_or(AuthError::Invalid)
                .and_then(|i| self.caller(i, access)),
        )
    }

    /// Decides whether the caller with this `Authorization` header may use a part open to
    /// `access`. May run an argon2 verification: call it off the async threads.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        access: Access,
    ) -> Result<Caller, AuthError> {
        if !self.enabled() || access == Access::Anyone {
            return Ok(Caller { user: None });
        }
        let authorization = authorization.ok_or(AuthError::Missing)?;
        self.caller(self.authenticate(authorization)?, access)
    }

    /// The caller of account `index`, if its roles open a part open to `access`.
    fn caller(&self, index: usize, access: Access) -> Result<Caller, AuthError> {
        let account = &self.accounts[index];
        if access == Access::Admin && !account.roles.contains(&Role::Admin) {
            return Err(AuthError::Forbidden {
                user: account.name.clone(),
                needed: access,
            });
        }
        Ok(Caller {
            user: Some(account.name.clone()),
        })
    }

    /// The index of the account these credentials belong to.
    fn authenticate(&self, authorization: &str) -> Result<usize, AuthError> {
        let key = credentials_key(authorization);
        if let Some(index) = self.remembered().get(&key) {
            return index.ok_or(AuthError::Invalid);
        }
        let index = match authorization.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                self.by_token(token.trim())
            }
            Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
                self.by_password(encoded.trim())
            }
            _ => None,
        };
        let mut remembered = self.remembered();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(key, index);
        index.ok_or(AuthError::Invalid)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Option<usize>>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn by_token(&self, token: &str) -> Option<usize> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        self.accounts.iter().position(|account| {
            account
                .token_sha256
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&hash))
        })
    }

    fn by_password(&self, encoded: &str) -> Option<usize> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (name, password) = decoded.split_once(':')?;
        let index = self
            .accounts
            .iter()
            .position(|account| account.name == name)?;
        let hash = PasswordHash::new(self.accounts[index].password_hash.as_deref()?).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()
            .map(|()| index)
    }
}

/// What the memory of checked credentials knows them by.
fn credentials_key(authorization: &str) -> [u8; 32] {
    Sha256::digest(authorization.as_bytes()).into()
}

/// An argon2id hash of a password, in PHC form, with a random salt.
pub fn hash_password(password: &str) -> String {
    // Sixteen bytes from the operating system's generator, through a v4 UUID.
    let salt =
        SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).expect("16 bytes make a salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password with default parameters")
        .to_string()
}

/// A new random bearer token and the SHA-256 hash (hex) to configure for it.
pub fn new_token() -> (String, String) {
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn accounts_roles_and_credentials_decide_access() {
        let (token, token_hash) = new_token();
        let auth = Auth::new(vec![
            Account {
                name: "ada".into(),
                password_hash: Some(hash_password("correct horse")),
                token_sha256: vec![],
                roles: vec![Role::Admin],
            },
            Account {
                name: "bob".into(),
                password_hash: None,
                token_sha256: vec![token_hash],
                roles: vec![],
            },
        ])
        .unwrap();
        let ada = Some("ada".to_owned());
        let (good, bad) = (basic("ada", "correct horse"), basic("ada", "wrong"));
        // Nothing is known of credentials never checked: they need a verification.
        assert_eq!(auth.known(Some(&good), Access::Admin), None);
        assert_eq!(auth.known(Some(&bad), Access::Account), None);
        assert_eq!(
            auth.authorize(Some(&good), Access::Admin).unwrap().user,
            ada
        );
        // The second time comes from memory, with the same answer, good or bad.
        assert_eq!(
            auth.authorize(Some(&good), Access::Admin).unwrap().user,
            ada
        );
        assert_eq!(
            auth.known(Some(&good), Access::Admin)
                .unwrap()
                .unwrap()
                .user,
            ada
        );
        assert_eq!(
            auth.authorize(Some(&bad), Access::Account),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.known(Some(&bad), Access::Account),
            Some(Err(AuthError::Invalid))
        );
        assert_eq!(
            auth.known(None, Access::Account),
            Some(Err(AuthError::Missing))
        );
        assert_eq!(
            auth.authorize(None, Access::Account),
            Err(AuthError::Missing)
        );
        assert_eq!(auth.authorize(None, Access::Anyone).unwrap().user, None);
        let bearer = format!("Bearer {token}");
        assert_eq!(
            auth.authorize(Some(&bearer), Access::Account).unwrap().user,
            Some("bob".into())
        );
        assert!(matches!(
            auth.authorize(Some(&bearer), Access::Admin),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(
            auth.authorize(Some("Bearer nope"), Access::Account),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authorize(Some("Digest x"), Access::Account),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authorize(Some("Basic !!!"), Access::Account),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn bad_accounts_are_refused_at_start() {
        let account = |name: &str, hash: Option<&str>, token: &str| Account {
            name: name.into(),
            password_hash: hash.map(str::to_owned),
            token_sha256: if token.is_empty() {
                vec![]
            } else {
                vec![token.into()]
            },
            roles: vec![],
        };
        assert!(Auth::new(vec![account("a:b", None, "")]).is_err());
        assert!(Auth::new(vec![account("a", Some("plaintext"), "")]).is_err());
        assert!(Auth::new(vec![account("a", None, "abc")]).is_err());
        assert!(Auth::new(vec![account("a", None, ""), account("a", None, "")]).is_err());
        assert!(!Auth::new(vec![]).unwrap().enabled());
    }
}
