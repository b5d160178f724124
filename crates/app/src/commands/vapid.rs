//! `pushwarden vapid generate | public-key`: the Web Push application-server key (RFC 8292).
//!
//! The private key file is what `PUSHWARDEN_VAPID_PRIVATE_KEY` names; the public key (base64url,
//! uncompressed point) is what the vault server advertises in `/config` as `vapidPublicKey`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use pushwarden_push::webpush::VapidKey;

#[derive(Subcommand, Debug, Clone)]
pub enum VapidCommand {
    /// Create a key pair: writes the private key (PKCS#8 PEM, mode 0600), prints the public key.
    Generate {
        /// Where to write the private key.
        #[arg(long, default_value = "vapid-private-key.pem")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of an existing private key file.
    PublicKey {
        #[arg(long, env = "PUSHWARDEN_VAPID_PRIVATE_KEY")]
        key: PathBuf,
    },
}

pub fn run(command: &VapidCommand) -> Result<()> {
    match command {
        VapidCommand::Generate { out, force } => {
            let public = generate(out, *force)?;
            eprintln!("private key written to {}", out.display());
            println!("{public}");
        }
        VapidCommand::PublicKey { key } => println!("{}", public_key(key)?),
    }
    Ok(())
}

/// Writes a new private key to `path`; returns the public key.
pub fn generate(path: &Path, force: bool) -> Result<String> {
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let key = VapidKey::generate();
    let pem = key
        .to_pem()
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    crate::secrets::write_private(path, &pem)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key.public_key_base64url().to_owned())
}

/// The public key of the private key in `path`.
pub fn public_key(path: &Path) -> Result<String> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = VapidKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(key.public_key_base64url().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_reads_back_with_the_same_public_key() {
        let dir = std::env::temp_dir().join(format!("pushwarden-vapid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let _ = std::fs::remove_file(&path);
        let public = generate(&path, false).unwrap();
        assert_eq!(public_key(&path).unwrap(), public);
        // An uncompressed P-256 point: 65 bytes, 87 base64url characters.
        assert_eq!(public.len(), 87);
        assert!(
            generate(&path, false).is_err(),
            "an existing key is not overwritten"
        );
        assert_ne!(generate(&path, true).unwrap(), public);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
