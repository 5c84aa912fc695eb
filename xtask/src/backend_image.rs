//! The test and demo backend image: busybox (Debian's busybox-static) FROM scratch, serving
//! `/www` with httpd by default. Built locally, since there is no registry here. Used by the
//! demo and by the swarm tests (tests/src/docker.rs); std only, like the rest of this library.
use std::process::Command;

pub const BACKEND_IMAGE: &str = "interlock-test-backend:1";

/// Builds the image unless it exists.
pub fn ensure() -> Result<(), String> {
    let exists = Command::new("docker")
        .args(["image", "inspect", BACKEND_IMAGE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ilt-image-{}", std::process::id()));
    let built = build_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    built
}

fn build_in(dir: &std::path::Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("preparing the backend image in {}: {e}", dir.display());
    std::fs::create_dir_all(dir.join("www")).map_err(io)?;
    std::fs::copy("/bin/busybox", dir.join("busybox"))
        .map_err(|e| format!("copying /bin/busybox (package busybox-static): {e}"))?;
    std::fs::write(dir.join("www/index.html"), "ok\n").map_err(io)?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /busybox\nCOPY www /www\n\
         CMD [\"/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .map_err(io)?;
    let out = Command::new("docker")
        .args(["build", "-q", "-t", BACKEND_IMAGE])
        .arg(dir)
        .output()
        .map_err(|e| format!("running docker build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker build of {BACKEND_IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
