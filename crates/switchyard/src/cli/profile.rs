//! Where the management commands find their server and credentials: flags, then environment
//! variables (clap reads both), then a named profile in the profile file.
//!
//! The profile file is TOML, `$SWITCHYARD_CONFIG` or `$XDG_CONFIG_HOME/switchyard/profiles.toml`
//! (`~/.config/switchyard/profiles.toml`), written with mode 0600 because it holds keys:
//!
//! ```toml
//! [profiles.default]
//! url = "http://127.0.0.1:8080"
//! api_key = "sk_..."
//! workspace = "ws_..."
//! ```

use super::{Failure, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SWITCHYARD_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("switchyard").join("profiles.toml"))
}

pub fn load() -> Result<ProfileFile, Failure> {
    let Some(path) = path() else { return Ok(ProfileFile::default()) };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProfileFile::default()),
        Err(e) => Err(Failure::usage(format!("could not read {}: {e}", path.display()))),
    }
}

pub fn save(file: &ProfileFile) -> Result<PathBuf, Failure> {
    let path = path().ok_or_else(|| Failure::usage("no profile file: set SWITCHYARD_CONFIG or HOME"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Failure::usage(format!("could not create {}: {e}", dir.display())))?;
    }
    let text = toml::to_string_pretty(file).map_err(|e| Failure::usage(e.to_string()))?;
    let tmp = path.with_extension("toml.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(|e| Failure::usage(format!("could not write {}: {e}", tmp.display())))?;
        f.write_all(text.as_bytes()).map_err(|e| Failure::usage(format!("could not write {}: {e}", tmp.display())))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Failure::usage(format!("could not write {}: {e}", path.display())))?;
    Ok(path)
}

/// The flags and environment, with the profile filling what they leave out.
pub fn resolve(target: &Target) -> Result<Profile, Failure> {
    let given = Profile {
        url: target.url.clone(),
        api_key: target.api_key.clone(),
        publishable_key: target.publishable_key.clone(),
        workspace: target.workspace.clone(),
    };
    let file = load()?;
    let name = target.profile.as_deref().unwrap_or("default");
    let stored = match file.profiles.get(name) {
        Some(p) => p.clone(),
        None if target.profile.is_some() => {
            return Err(Failure::usage(format!(
                "no profile named `{name}` in {}",
                path().map(|p| p.display().to_string()).unwrap_or_default()
            )))
        }
        None => Profile::default(),
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Ok(Profile {
        url: nonempty(given.url).or(stored.url),
        api_key: nonempty(given.api_key).or(stored.api_key),
        publishable_key: nonempty(given.publishable_key).or(stored.publishable_key),
        workspace: nonempty(given.workspace).or(stored.workspace),
    })
}

/// A key as it may be shown: at most its kind (`sk`, `pk`, `st`) and last four characters.
pub fn masked(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "****".into();
    }
    let kind: String = chars.iter().take(3).take_while(|c| **c != '_').collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{kind}_…{tail}")
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn masking_shows_the_kind_and_four_characters_at_most() {
        assert_eq!(masked("sk_try_admin_key_0123456789abcdef"), "sk_…cdef");
        assert_eq!(masked("a-key-without-any-underscore-at-all"), "a-k_…-all");
        assert_eq!(masked("short"), "****");
    }
}
