//! The `env` grant: environment variables the guest sees, passed from the host by
//! name (`HOME`, which must be set) or given (`MODE=fast`). Values long enough to be
//! secrets are masked in everything the executor reports.

use wasmtime_wasi::WasiCtxBuilder;

/// Granted values shorter than this are not masked (`1`, `true`, a port).
const SECRET_MIN_LEN: usize = 8;

/// Whether the host's variables are read when a manifest is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEnv {
    /// Each variable passed by name must be set; its value is read now.
    Read,
    /// Not read (their values empty): the manifest is loaded to be stored, and the
    /// host that runs it reads them when it loads it.
    Deferred,
}

/// Resolves the `env` entries into (name, value) pairs.
pub(crate) fn parse(entries: &[String], host: HostEnv) -> Result<Vec<(String, String)>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(n, entry)| one(entry, host).map_err(|why| format!("env[{n}]: {why}")))
        .collect()
}

/// `NAME` passes the host's value, `NAME=value` sets one.
fn one(entry: &str, host: HostEnv) -> Result<(String, String), String> {
    let (name, value) = match entry.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (entry, None),
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if name.is_empty() || !name.chars().all(plain) {
        return Err(format!(
            "'{name}' is not a variable name (letters, digits and '_')"
        ));
    }
    let value = match value {
        Some(value) => value,
        None if host == HostEnv::Deferred => String::new(),
        None => std::env::var(name).map_err(|_| {
            format!("host variable '{name}' is not set (set it, or give NAME=value)")
        })?,
    };
    Ok((name.to_string(), value))
}

/// Sets the granted variables in a WASI context.
pub(crate) fn wire(env: &[(String, String)], wasi: &mut WasiCtxBuilder) {
    for (name, value) in env {
        wasi.env(name, value);
    }
}

/// The granted values to mask in what the executor reports, by variable name.
pub(crate) fn secrets(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(_, value)| value.len() >= SECRET_MIN_LEN)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_set_variables_and_given_values_and_masks_long_ones() {
        let entries = ["PATH".into(), "MODE=fast".into(), "TOKEN=abcdefgh12".into()];
        let env = parse(&entries, HostEnv::Read).unwrap();
        assert_eq!(env[1], ("MODE".into(), "fast".into()));
        assert_eq!(env[0].1, std::env::var("PATH").unwrap());
        let masked: Vec<String> = secrets(&env[1..]).into_iter().map(|(n, _)| n).collect();
        assert_eq!(masked, ["TOKEN"]);
        assert_eq!(
            parse(&["A-B".into()], HostEnv::Read).unwrap_err(),
            "env[0]: 'A-B' is not a variable name (letters, digits and '_')"
        );
        assert_eq!(
            parse(
                &["OK=1".into(), "SUPERSTEP_SURELY_UNSET_VARIABLE".into()],
                HostEnv::Read
            )
            .unwrap_err(),
            "env[1]: host variable 'SUPERSTEP_SURELY_UNSET_VARIABLE' is not set (set it, or give NAME=value)"
        );
    }
}
