//! The settings of the benchmarks that run no server (and so keep the system allocator rather
//! than take [`super`]'s): a variable parsed, or a default.

/// The variable `name` parsed, `default` when it is not set; an error when it does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(raw) => raw
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={raw:?} does not parse")),
        Err(_) => Ok(default),
    }
}
