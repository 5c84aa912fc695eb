//! Locked memory of the BPF maps this process holds, from /proc/self/fdinfo (the kernel's
//! own accounting, `memlock:` of every map fd).

/// Sums `memlock:` over the process's BPF map fds.
pub fn maps_memlock_bytes() -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/fdinfo")? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue; // the fd was closed meanwhile
        };
        total += memlock_of_map(&text).unwrap_or(0);
    }
    Ok(total)
}

/// The `memlock:` of one fdinfo text, when it describes a BPF map.
fn memlock_of_map(fdinfo: &str) -> Option<u64> {
    if !fdinfo.lines().any(|l| l.starts_with("map_type:")) {
        return None;
    }
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::memlock_of_map;

    #[test]
    fn reads_memlock_of_maps_only() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1\nmap_type:\t9\nkey_size:\t16\nmemlock:\t201326592\n";
        assert_eq!(memlock_of_map(map), Some(201_326_592));
        let prog = "pos:\t0\nprog_type:\t6\nmemlock:\t4096\n";
        assert_eq!(memlock_of_map(prog), None);
        assert_eq!(memlock_of_map("map_type:\t1\nmemlock:\tnope\n"), None);
    }
}
