//! Prints what the splitter makes of each argument (a debugging aid).
fn main() {
    for a in std::env::args().skip(1) {
        let a = a.replace('⏎', "\n");
        let r = acg_policy::split_bash(&a);
        println!("{a:?}\n  params: {:?}", r.params);
        for o in r.opaque {
            println!("  opaque: {:?}: {}", o.snippet, o.reason);
        }
    }
}
