//! Where `strata login` keeps the server and credential: `$STRATA_CONFIG`, or
//! `strata/config.json` in the user's configuration directory (`~/.config` on Linux),
//! readable by its owner only (mode 0600).

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What `strata login` saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub server: Option<String>,
    /// An API key or a session token.
    pub token: Option<String>,
    /// `key` or `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The user of a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// When a session token stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

pub fn path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("STRATA_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("strata").join("config.json"))
        .ok_or_else(|| "no configuration directory: set STRATA_CONFIG or HOME".to_string())
}

/// The saved configuration; empty when there is none.
pub fn load() -> Result<Saved, String> {
    let path = path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a strata configuration ({e})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes it atomically (a temporary file renamed over the old one), mode 0600.
pub fn save(saved: &Saved) -> Result<PathBuf, String> {
    let path = path()?;
    let dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // An existing file keeps its old mode through open(): set it.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&serde_json::to_vec_pretty(saved).expect("serializable"))?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
