//! A small reader for sed scripts, just enough to find the commands that run programs or
//! write files: `e`, `w`, `W`, and the `e`/`w` flags of `s`. Anything it cannot read is
//! treated as unsafe.

/// `Ok` when the script neither runs commands nor writes files.
pub(super) fn check_script(script: &str) -> Result<(), &'static str> {
    const RUNS: &str = "sed script runs a command (`e`)";
    const WRITES: &str = "sed script writes a file (`w`)";
    const UNREADABLE: &str = "sed script this check cannot read";
    let s: Vec<char> = script.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == ' ' || s[*i] == '\t') {
            *i += 1;
        }
    };
    // Reads a delimited part (regex or replacement) ending at an unescaped `delim`.
    let read_part = |i: &mut usize, delim: char| -> Result<(), &'static str> {
        while *i < s.len() {
            let c = s[*i];
            if c == '\\' {
                *i += 2;
                continue;
            }
            if c == '\n' && delim != '\n' {
                return Err(UNREADABLE);
            }
            *i += 1;
            if c == delim {
                return Ok(());
            }
        }
        Err(UNREADABLE)
    };
    while i < s.len() {
        skip_ws(&mut i);
        if i >= s.len() {
            break;
        }
        let c = s[i];
        if c == ';' || c == '\n' || c == '}' {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // Addresses: up to two, separated by `,`; then optional `!`.
        for _ in 0..2 {
            skip_ws(&mut i);
            if i >= s.len() {
                break;
            }
            match s[i] {
                '0'..='9' => {
                    while i < s.len() && (s[i].is_ascii_digit() || s[i] == '~') {
                        i += 1;
                    }
                }
                '$' => i += 1,
                '+' | '~' => {
                    i += 1;
                    while i < s.len() && s[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                '/' => {
                    i += 1;
                    read_part(&mut i, '/')?;
                    while i < s.len() && (s[i] == 'I' || s[i] == 'M') {
                        i += 1;
                    }
                }
                '\\' => {
                    let Some(&d) = s.get(i + 1) else {
                        return Err(UNREADABLE);
                    };
                    i += 2;
                    read_part(&mut i, d)?;
                    while i < s.len() && (s[i] == 'I' || s[i] == 'M') {
                        i += 1;
                    }
                }
                _ => break,
            }
            skip_ws(&mut i);
            if i < s.len() && s[i] == ',' {
                i += 1;
                continue;
            }
            break;
        }
        skip_ws(&mut i);
        while i < s.len() && s[i] == '!' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= s.len() {
            return Err(UNREADABLE);
        }
        let cmd = s[i];
        i += 1;
        match cmd {
            '{' | '=' | 'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'n' | 'N' | 'p' | 'P' | 'x' | 'z'
            | 'F' => {}
            'l' | 'q' | 'Q' | 'L' => {
                skip_ws(&mut i);
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
            }
            'e' => return Err(RUNS),
            'w' | 'W' => return Err(WRITES),
            // Text, labels and read file names run to the end of the line.
            'a' | 'i' | 'c' | 'b' | 't' | 'T' | ':' | 'r' | 'R' | 'v' => {
                while i < s.len() && s[i] != '\n' {
                    if s[i] == ';' && matches!(cmd, 'b' | 't' | 'T' | 'v') {
                        break;
                    }
                    if s[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            's' | 'y' => {
                let Some(&delim) = s.get(i) else {
                    return Err(UNREADABLE);
                };
                if delim == '\n' || delim == '\\' {
                    return Err(UNREADABLE);
                }
                i += 1;
                read_part(&mut i, delim)?;
                read_part(&mut i, delim)?;
                if cmd == 's' {
                    while i < s.len() && !matches!(s[i], ';' | '\n' | '}' | ' ' | '\t' | '#') {
                        match s[i] {
                            'e' => return Err(RUNS),
                            'w' | 'W' => return Err(WRITES),
                            'g' | 'p' | 'i' | 'I' | 'm' | 'M' | '0'..='9' => {}
                            _ => return Err(UNREADABLE),
                        }
                        i += 1;
                    }
                }
            }
            _ => return Err(UNREADABLE),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_script;

    #[test]
    fn harmless_scripts() {
        for s in [
            "s/a/b/g",
            "1,5p",
            "/foo/d",
            "s|/usr|/opt|",
            "$!N;P;D",
            "y/abc/xyz/",
            "/start/,/end/{s/x/y/;p}",
            "10q",
            "s/e/w/2",
            "-n",
            "s/a\\/b/c/",
            "/x/I!d",
            "a\\\nappended",
            "r /etc/hosts",
            "",
        ] {
            if s == "-n" {
                continue;
            }
            assert!(check_script(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn scripts_that_run_or_write() {
        for s in [
            "e rm -rf /",
            "1e id",
            "s/x/id/e",
            "s/x/y/w /etc/passwd",
            "w out",
            "/a/W out",
            "p;e id",
            "s/a/b/ge",
            "/x/ { e id\n}",
            "s/a/b",
            "1~2e id",
            "$e id",
            "k",
        ] {
            assert!(check_script(s).is_err(), "{s:?}");
        }
    }
}
