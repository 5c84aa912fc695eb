//! bpffs pinning: the maps and the XDP link outlive the agent, so a restarted agent takes
//! them over and established flows keep their translation.
//!
//! Layout under the pin directory: one file per map (`LB_*`) and `link-<iface>` per
//! interface. Removing the directory (`rm -r`) detaches the program once no agent runs.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use aya::maps::MapInfo;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{xdp::XdpLink, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use super::maps::{MapLayout, MAP_LAYOUTS};
use crate::bpf::EBPF_OBJECT;

/// Name of the balancer program in the object.
pub const PROG_LB: &str = "interlock_lb";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn fs_type(path: &Path) -> Result<i64> {
    let st = nix::sys::statfs::statfs(path).with_context(|| format!("statfs {}", path.display()))?;
    Ok(st.filesystem_type().0 as i64)
}

/// Makes sure `dir` exists on a bpffs; mounts bpffs on `/sys/fs/bpf` when nothing is there.
pub fn prepare_pin_dir(dir: &Path) -> Result<()> {
    let parent = dir
        .parent()
        .with_context(|| format!("pin directory {} has no parent", dir.display()))?;
    if fs_type(parent)? != BPF_FS_MAGIC {
        if parent != Path::new("/sys/fs/bpf") {
            bail!(
                "{} is not on a bpf filesystem: mount one (`mount -t bpf bpf {}`) or use a \
                 directory under /sys/fs/bpf",
                dir.display(),
                parent.display()
            );
        }
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("mounting bpffs on /sys/fs/bpf failed (the agent needs CAP_SYS_ADMIN)")?;
        tracing::info!("mounted bpffs on /sys/fs/bpf");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating pin directory {}", dir.display()))
}

/// Refuses a pin directory left by an incompatible version, before anything is loaded or
/// pinned. aya reuses whatever map is pinned under a name without comparing it with the
/// object's definition, so an older map with other key or value sizes would be read and
/// written with this version's types; and a missing map would be created empty next to the
/// old ones. An empty directory (or one holding only link pins) is a fresh start.
fn check_pinned_layout(dir: &Path) -> Result<()> {
    let pinned: Vec<&MapLayout> = MAP_LAYOUTS.iter().filter(|l| dir.join(l.name).exists()).collect();
    if pinned.is_empty() {
        return Ok(());
    }
    let incompatible = |name: &str, why: String| {
        anyhow::anyhow!(
            "the maps pinned in {} come from an incompatible version of interlock: {name} {why}; \
             stop the agent and remove that directory",
            dir.display()
        )
    };
    for want in pinned {
        let path = dir.join(want.name);
        let info = MapInfo::from_pin(&path).with_context(|| {
            format!(
                "reading the pinned map {} (needs CAP_BPF/CAP_SYS_ADMIN)",
                path.display()
            )
        })?;
        // A type number aya does not know (a newer kernel's) is a mismatch too.
        match info.map_type() {
            Ok(t) if t == want.map_type => {}
            Ok(t) => {
                return Err(incompatible(
                    want.name,
                    format!("is a {t:?} map, not {:?}", want.map_type),
                ))
            }
            Err(_) => return Err(incompatible(want.name, format!("is not a {:?} map", want.map_type))),
        }
        let have = (info.key_size() as usize, info.value_size() as usize, info.max_entries());
        if have != (want.key_size, want.value_size, want.max_entries) {
            return Err(incompatible(
                want.name,
                format!(
                    "has {}-byte keys, {}-byte values and {} entries, not {}, {} and {}",
                    have.0, have.1, have.2, want.key_size, want.value_size, want.max_entries
                ),
            ));
        }
    }
    // After the comparison: a map of another layout says more than the ones missing with it.
    if let Some(missing) = MAP_LAYOUTS.iter().find(|l| !dir.join(l.name).exists()) {
        return Err(incompatible(missing.name, "is missing".into()));
    }
    Ok(())
}

/// Loads the object, reusing the maps pinned in `dir` (or creating and pinning them).
pub fn load_pinned(dir: &Path) -> Result<Ebpf> {
    crate::bpf::raise_memlock_limit();
    check_pinned_layout(dir)?;
    let paths: Vec<(&str, PathBuf)> = MAP_LAYOUTS.iter().map(|l| (l.name, dir.join(l.name))).collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(EBPF_OBJECT).with_context(|| {
        format!(
            "loading the eBPF object with maps pinned in {} failed (needs CAP_BPF/CAP_SYS_ADMIN)",
            dir.display()
        )
    })
}

/// Attaches `interlock_lb` to `iface`: replaces the program of a link pinned by an earlier
/// agent in one step, or attaches anew and pins the link.
pub fn attach_pinned(bpf: &mut Ebpf, iface: &str, mode: XdpMode, dir: &Path) -> Result<bool> {
    let program: &mut Xdp = bpf
        .program_mut(PROG_LB)
        .context("the eBPF object has no program interlock_lb")?
        .try_into()?;
    // One program serves every interface: load it on the first call only.
    if program.fd().is_err() {
        program.load().context("the kernel rejected the interlock_lb program")?;
    }
    let link_path = dir.join(format!("link-{iface}"));
    if link_path.exists() {
        let pinned =
            PinnedLink::from_pin(&link_path).with_context(|| format!("opening pinned link {}", link_path.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .with_context(|| format!("{} is not an XDP link", link_path.display()))?;
        let id = program
            .attach_to_link(link)
            .with_context(|| format!("replacing the program on {iface}"))?;
        // As for a new attachment, the pin alone holds the link: removing the pin detaches
        // (and a running agent attaches again), closing our descriptor changes nothing.
        drop(program.take_link(id)?);
        return Ok(true);
    }
    let id = program
        .attach(iface, mode)
        .with_context(|| format!("attaching interlock_lb to {iface} failed (does it exist?)"))?;
    let link = program.take_link(id)?;
    let fd_link = FdLink::try_from(link).context("the kernel attached XDP without a bpf_link (too old to pin)")?;
    fd_link
        .pin(&link_path)
        .with_context(|| format!("pinning the link at {}", link_path.display()))?;
    Ok(false)
}
