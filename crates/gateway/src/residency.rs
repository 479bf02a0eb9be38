//! Keeping the daemon's resident memory to the code it keeps running.
//!
//! The binary carries every adapter (Rocket.Chat, Claude, OpenCode, the permission broker,
//! tree-sitter's bash grammar, …): about 9 MB of machine code. Start-up runs a lot of it once
//! (command line, config loading and validation, TLS and HTTP client set-up, context files),
//! and Linux maps file pages around every page fault ("fault-around", 64 KiB by default), so
//! a freshly started daemon has most of its text section mapped: ~9 of ~13 MiB RSS, for code
//! it will not run again.
//!
//! [`release_startup_pages`] runs once start-up is done and drops the mappings of the
//! executable's read-only, never-written segments (`MADV_DONTNEED`). Those pages stay in the
//! page cache, shared with every other process, and whatever runs later faults its pages
//! back in (a few minor faults while the daemon warms up). Segments with private copies
//! (relocated RELRO data, `.data`, `.bss`) are never touched: they are excluded by their
//! `Anonymous` size, which is non-zero for any written page.

/// One mapping of the running executable from `/proc/self/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    start: usize,
    end: usize,
    writable: bool,
    anonymous_kb: u64,
}

/// The executable's mappings in an smaps listing.
fn segments(smaps: &str, exe: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut current: Option<Segment> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            // A mapping header: `start-end perms offset dev inode [path]`.
            if let Some(seg) = current.take() {
                out.push(seg);
            }
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            if path == exe {
                if let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) {
                    current = Some(Segment {
                        start,
                        end,
                        writable: perms.contains('w'),
                        anonymous_kb: 0,
                    });
                }
            }
        } else if first == "Anonymous:" {
            if let Some(seg) = current.as_mut() {
                seg.anonymous_kb = fields
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u64::MAX);
            }
        }
    }
    out.extend(current);
    out
}

/// Drops the resident pages of the executable's read-only, unmodified segments (see the
/// module doc), and gives the heap memory start-up used and freed back to the system (glibc
/// keeps freed pages otherwise: starting 2,000 watchers runs 2,000 session creations at once).
/// Best effort: without `/proc` only the heap is trimmed.
pub fn release_startup_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for seg in segments(&smaps, &exe.to_string_lossy()) {
        if seg.writable || seg.anonymous_kb != 0 || seg.end <= seg.start {
            continue;
        }
        // SAFETY: a read-only file mapping of our own executable with no private (anonymous)
        // pages: dropping its page-table entries only makes the next access fault the same
        // file contents back in. Nothing can have written to it (it is not writable).
        unsafe {
            libc::madvise(
                seg.start as *mut libc::c_void,
                seg.end - seg.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:00 42 /opt/acg/bin/agent-chat-gateway
Size:               1024 kB
Rss:                 800 kB
Anonymous:             0 kB
VmFlags: rd mr mw me
55d0a0100000-55d0a0900000 r-xp 00100000 fe:00 42 /opt/acg/bin/agent-chat-gateway
Rss:                7000 kB
Anonymous:             0 kB
55d0a0900000-55d0a0980000 r--p 00900000 fe:00 42 /opt/acg/bin/agent-chat-gateway
Anonymous:           552 kB
55d0a0980000-55d0a0983000 rw-p 00980000 fe:00 42 /opt/acg/bin/agent-chat-gateway
Anonymous:            12 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 7 /usr/lib/libc.so.6
Anonymous:             0 kB
";

    #[test]
    fn only_unmodified_read_only_segments_of_the_executable_qualify() {
        let segs = segments(SMAPS, "/opt/acg/bin/agent-chat-gateway");
        assert_eq!(segs.len(), 4, "{segs:?}");
        let released: Vec<usize> = segs
            .iter()
            .filter(|s| !s.writable && s.anonymous_kb == 0)
            .map(|s| s.start)
            .collect();
        // The header segment and the text; not the relocated RELRO data, not .data.
        assert_eq!(released, vec![0x55d0a0000000, 0x55d0a0100000]);
    }

    #[test]
    fn releasing_our_own_pages_keeps_the_process_working() {
        release_startup_pages();
        // Code and read-only data of this test binary fault back in.
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        assert!(format!("{:?}", segments("", "x")).starts_with('['));
    }
}
