//! Installing an image into the inactive slot: verified as it streams in (signature, board,
//! version floor, size, hash), made the slot's binary only once whole and checked, and put on
//! trial by one atomic pointer write. Until that write the board boots what it booted before.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fleet_proto::image::{self, Manifest, Policy};

use super::slots::{Boot, Slot, Slots, Trial, write_atomically};
use super::{UpdateSection, crash_point};

/// The image a fleet command asked for: the one received must be it, not merely signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub sha256: String,
    pub version: image::Version,
}

impl Expected {
    fn check(&self, manifest: &Manifest) -> Result<(), String> {
        if !manifest.sha256.eq_ignore_ascii_case(&self.sha256) {
            return Err(format!(
                "refused: the image's payload is {}, not the {} asked for",
                manifest.sha256, self.sha256
            ));
        }
        if manifest.version != self.version {
            return Err(format!(
                "refused: the image is version {}, not the {} asked for",
                manifest.version, self.version
            ));
        }
        Ok(())
    }
}

/// Installs the image file at `image_path` for `board`; returns the slot it went to, now on
/// trial.
pub fn install(
    image_path: &Path,
    data_dir: &Path,
    board: &str,
    update: &UpdateSection,
) -> Result<(Slot, Manifest), String> {
    let source = std::fs::File::open(image_path)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("{}: {e}", image_path.display()))?;
    install_from(source, data_dir, board, update, None)
}

/// Installs the image read from `source` (a file, a download), checked against `expected`
/// when given, before the slot's binary or the pointer changes.
pub fn install_from(
    source: impl std::io::Read,
    data_dir: &Path,
    board: &str,
    update: &UpdateSection,
    expected: Option<&Expected>,
) -> Result<(Slot, Manifest), String> {
    let slots = Slots::new(data_dir);
    let boot = slots.boot();
    if let Some(trial) = boot.trial {
        return Err(format!(
            "slot {:?} is already on trial: wait for it to commit or roll back",
            trial.slot
        ));
    }
    // The factory build runs from elsewhere, so with nothing committed either slot is free.
    let slot = boot.active.map_or(Slot::A, Slot::other);
    let dir = slots.dir(slot);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let partial = dir.join("hashwarden-fw.partial");
    let keys = update.trusted_keys()?;
    let policy = Policy {
        keys: &keys,
        board: Some(board),
        min_version: update.min_version()?,
        max_size: update.max_size,
    };
    let written = (|| -> Result<Manifest, String> {
        let file =
            std::fs::File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        let mut sink = CrashAfterFirstWrite(std::io::BufWriter::new(file), false);
        let manifest =
            image::verify(source, &policy, &mut sink).map_err(|e| format!("refused: {e}"))?;
        if let Some(expected) = expected {
            expected.check(&manifest)?;
        }
        let file = sink
            .0
            .into_inner()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        file.sync_all()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        Ok(manifest)
    })();
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    crash_point("payload-written");
    let binary = slots.binary(slot);
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .and_then(|()| std::fs::rename(&partial, &binary))
        .and_then(|()| std::fs::File::open(&dir)?.sync_all())
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    crash_point("slot-renamed");
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    write_atomically(&slots.manifest(slot), &manifest_json, "manifest")
        .map_err(|e| format!("{}: {e}", slots.manifest(slot).display()))?;
    let on_trial = Boot {
        active: boot.active,
        trial: Some(Trial { slot, attempts: 0 }),
    };
    slots
        .set_boot(&on_trial)
        .map_err(|e| format!("boot pointer: {e}"))?;
    Ok((slot, manifest))
}

/// The payload's writer, with the `payload-streaming` crash point after its first write: a power
/// cut with half an image in the slot.
struct CrashAfterFirstWrite<W>(W, bool);

impl<W: Write> Write for CrashAfterFirstWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        if !self.1 {
            self.1 = true;
            self.0.flush()?;
            crash_point("payload-streaming");
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
