//! Files the gateway writes itself: generated host and assertion keys.

use std::path::Path;

/// Creates `dir` and its parents, readable by the owner only (0700), as sshd expects
/// of directories holding keys. An existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
