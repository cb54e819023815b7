//! A real small filesystem for full-disk tests: a tmpfs of a few megabytes. Mounted
//! directly when the tests run as root; otherwise in a private mount namespace of the
//! daemon's own (`unshare --user --map-root-user --mount`, no privilege needed), seen
//! from the test through `/proc/<pid>/root`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    /// Holds the mount point; removed after the unmount.
    _home: tempfile::TempDir,
    dir: PathBuf,
    size_mb: u32,
    /// Mounted by the test itself (unmounted on drop); else inside the daemon's namespace.
    direct: bool,
}

fn runs(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

impl SmallDisk {
    /// A tmpfs of `size_mb` at a new directory. `EDGECAM_TEST_SMALL_DISK=mount` or
    /// `=unshare` picks the way, to test both.
    pub fn new(size_mb: u32) -> SmallDisk {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let want = std::env::var("EDGECAM_TEST_SMALL_DISK").unwrap_or_default();
        let size = format!("size={size_mb}m");
        if want != "unshare"
            && runs(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &size, "edgecam-test"])
                    .arg(&dir),
            )
        {
            return SmallDisk {
                _home: home,
                dir,
                size_mb,
                direct: true,
            };
        }
        let unshare = ["--user", "--map-root-user", "--mount", "true"];
        assert!(
            want != "mount" && runs(Command::new("unshare").args(unshare)),
            "cannot make a small filesystem: mounting a tmpfs needs root, and \
             `unshare --user --mount` (unprivileged user namespaces) is not allowed here"
        );
        SmallDisk {
            _home: home,
            dir,
            size_mb,
            direct: false,
        }
    }

    /// Where the daemon sees the small disk.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the daemon runs under so that it sees the small disk at `dir`.
    pub fn wrapper(&self) -> Vec<String> {
        if self.direct {
            return Vec::new();
        }
        let script = format!(
            "mount -t tmpfs -o size={}m edgecam-test \"$0\" && exec \"$@\"",
            self.size_mb
        );
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
        ]
        .into_iter()
        .map(String::from)
        .chain([script, self.dir.display().to_string()])
        .collect()
    }

    /// Whether the small disk is still there after the daemon exits (mounted by the test,
    /// not inside the daemon's own namespace).
    pub fn survives_the_daemon(&self) -> bool {
        self.direct
    }

    /// The small disk as the test sees it, `pid` being the daemon's.
    pub fn path(&self, pid: u32) -> PathBuf {
        if self.direct {
            return self.dir.clone();
        }
        let inside = self.dir.strip_prefix("/").unwrap_or(&self.dir);
        Path::new(&format!("/proc/{pid}/root")).join(inside)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.direct {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
