//! OpenSSH pattern lists (ssh_config(5), PATTERNS), as `allowed_signers` uses them for
//! principals and `namespaces=`.
//!
//! A list is comma-separated patterns; `*` matches any run of characters (none included), `?`
//! exactly one; a pattern prefixed with `!` that matches makes the whole list refuse, whatever
//! else matches. Matching is case-sensitive, as `ssh-keygen -Y verify` does it for principals
//! and namespaces. Characters are Unicode scalar values (OpenSSH's `?` is one byte; the two
//! agree on ASCII, which is what principals and namespaces are in practice).

/// Whether `text` matches the pattern list `list`: some pattern matches and no `!`-negated
/// pattern does.
pub(crate) fn matches_list(text: &str, list: &str) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) => {
                if matches_one(text, negated) {
                    return false;
                }
            }
            None => positive |= matches_one(text, pattern),
        }
    }
    positive
}

/// Whether `text` matches one pattern with `*` and `?` wildcards. Linear backtracking over
/// the last `*` seen, so a hostile pattern cannot make it exponential.
fn matches_one(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_patterns() {
        assert!(matches_one("ci@example.com", "ci@example.com"));
        assert!(!matches_one("ci@example.com", "ci@example.co"));
        assert!(matches_one("ci@example.com", "*@example.com"));
        assert!(matches_one("@example.com", "*@example.com"));
        assert!(!matches_one("ci@example.org", "*@example.com"));
        assert!(matches_one("ci@x", "?i@x"));
        assert!(!matches_one("i@x", "?i@x"));
        assert!(matches_one("anything", "*"));
        assert!(matches_one("", "*"));
        assert!(!matches_one("", "?"));
        assert!(matches_one("aXbXc", "a*b*c"));
        assert!(!matches_one("aXbXd", "a*b*c"));
        assert!(matches_one("abcbc", "*bc"));
        assert!(!matches_one("CI@example.com", "ci@example.com"));
    }

    #[test]
    fn lists_and_negation() {
        assert!(matches_list(
            "ci@example.com",
            "ci@example.com,!evil@example.com"
        ));
        assert!(!matches_list(
            "evil@example.com",
            "ci@example.com,!evil@example.com"
        ));
        assert!(!matches_list(
            "evil@example.com",
            "*@example.com,!evil@example.com"
        ));
        assert!(!matches_list(
            "evil@example.com",
            "!evil@example.com,*@example.com"
        ));
        assert!(matches_list(
            "ok@example.com",
            "!evil@example.com,*@example.com"
        ));
        // A list of negations alone matches nothing.
        assert!(!matches_list("ok@example.com", "!evil@example.com"));
        assert!(matches_list("git", "file,git"));
        assert!(!matches_list("pv", "file,git"));
    }
}
