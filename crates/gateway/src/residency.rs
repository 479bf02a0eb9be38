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
    trim_heap();
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

/// Gives free heap memory back to the kernel (glibc's `malloc_trim`). Elsewhere a no-op.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes every thread allocate from glibc's main arena (`M_ARENA_MAX = 1`). Call before other
/// threads start. Elsewhere a no-op.
pub fn single_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// How often [`trim_heap_when_grown`] looks at the daemon's anonymous memory.
const TRIM_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Growth of anonymous memory since the last trim that makes it trim again.
const TRIM_GROWTH_BYTES: u64 = 256 * 1024;

/// Resident anonymous memory (resident minus file-backed pages) from `/proc/self/statm`.
fn resident_anonymous_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    anonymous_from_statm(&statm, page_size())
}

fn anonymous_from_statm(statm: &str, page: u64) -> Option<u64> {
    let mut fields = statm.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    Some(resident.saturating_sub(shared) * page)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Gives freed heap memory back to the system after bursts of work, for as long as the daemon
/// runs. glibc keeps the pages of freed chunks that are not at the top of the heap, so a load
/// of concurrent turns would otherwise stay resident for the daemon's lifetime. Checks once a
/// second (one read of `/proc/self/statm`) and calls `malloc_trim` only when anonymous memory
/// grew by [`TRIM_GROWTH_BYTES`] since the last trim, so a steady daemon never trims.
pub async fn trim_heap_when_grown() {
    let Some(mut baseline) = resident_anonymous_bytes() else {
        return;
    };
    let mut ticks = tokio::time::interval(TRIM_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(now) = resident_anonymous_bytes() else {
            return;
        };
        if now >= baseline + TRIM_GROWTH_BYTES {
            trim_heap();
            baseline = resident_anonymous_bytes().unwrap_or(now);
        } else if now < baseline {
            baseline = now;
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
    fn anonymous_memory_is_resident_minus_file_backed_pages() {
        assert_eq!(
            anonymous_from_statm("5000 2500 700 10 0 900 0\n", 4096),
            Some(1800 * 4096)
        );
        assert_eq!(anonymous_from_statm("garbage", 4096), None);
        assert!(resident_anonymous_bytes().unwrap() > 0);
    }

    /// Freed heap memory that glibc would keep (a live allocation above it pins the heap's top)
    /// is given back by the trim task within a few seconds.
    #[tokio::test(flavor = "current_thread")]
    async fn the_trim_task_gives_back_a_freed_burst() {
        let trim = tokio::spawn(trim_heap_when_grown());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let before = resident_anonymous_bytes().unwrap();
        // 8 MiB in 4 KiB chunks (below the mmap threshold), written so they are resident,
        // then a live allocation above them (so they are not at the heap's top), then the
        // chunks are freed: glibc keeps their pages.
        let mut burst: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 4096]).collect();
        let pin = vec![2u8; 100_000];
        burst.iter_mut().for_each(|c| c[100] = 3);
        let grown = resident_anonymous_bytes().unwrap();
        assert!(grown > before + 4 * 1024 * 1024, "{before} -> {grown}");
        drop(burst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut now = grown;
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            now = resident_anonymous_bytes().unwrap();
            if now + 4 * 1024 * 1024 < grown {
                break;
            }
        }
        assert!(
            now + 4 * 1024 * 1024 < grown,
            "still {now} after a burst to {grown}"
        );
        assert_eq!(pin[0], 2);
        trim.abort();
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
