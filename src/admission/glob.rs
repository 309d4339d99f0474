//! `abci_query` path globs: `*` matches any run of characters (including none and
//! `/`), `?` exactly one character, everything else itself; a pattern matches the whole
//! path. Matching is the greedy two-pointer walk that only ever backtracks to the most
//! recent `*`, so it is O(pattern × path) in the worst case and never exponential —
//! an operator's pattern like `*a*a*a*b` cannot be turned into a CPU sink by a client.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Star,
    One,
    Lit(char),
}

/// A compiled glob; compiled once per config load, matched per request without allocating.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: Box<str>,
    toks: Box<[Tok]>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let mut toks: Vec<Tok> = Vec::with_capacity(pattern.len());
        for c in pattern.chars() {
            let tok = match c {
                '*' => Tok::Star,
                '?' => Tok::One,
                c => Tok::Lit(c),
            };
            // A run of stars matches what one star does; collapsing keeps the walk short.
            if !(tok == Tok::Star && toks.last() == Some(&Tok::Star)) {
                toks.push(tok);
            }
        }
        Glob {
            source: pattern.into(),
            toks: toks.into_boxed_slice(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        let toks = &self.toks;
        let (mut p, mut t) = (0usize, 0usize);
        // Where to resume after the latest `*`: the token after it, and the text position
        // that star has consumed up to.
        let mut resume: Option<(usize, usize)> = None;
        loop {
            let next = text[t..].chars().next();
            match (toks.get(p), next) {
                (Some(Tok::Star), _) => {
                    resume = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                (Some(Tok::One), Some(c)) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (Some(Tok::Lit(l)), Some(c)) if *l == c => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch (or pattern done with text left): let the last star eat one more char.
            match resume {
                Some((rp, rt)) => match text[rt..].chars().next() {
                    Some(c) => {
                        let rt = rt + c.len_utf8();
                        resume = Some((rp, rt));
                        p = rp;
                        t = rt;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).matches(t)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("/store/*", "/store/bank/key"));
        assert!(m("/store/*", "/store/"));
        assert!(m("*", ""));
        assert!(m("/custom/*/params", "/custom/staking/params"));
        assert!(!m("/custom/*/params", "/custom/staking/params/x"));
        assert!(m("/p?th", "/path"));
        assert!(!m("/p?th", "/pth"));
        assert!(m("a?c", "aéc"), "? is one character, not one byte");
        assert!(m("*é", "café"));
        assert!(m("**a**", "bab"));
    }

    #[test]
    fn patterns_are_anchored_at_both_ends() {
        assert!(!m("/store/*/key", "x/store/a/key"));
        assert!(!m("/store", "/store/x"));
        assert!(!m("/store", "/stor"));
        assert!(m("/store", "/store"));
        assert!(!m("", "x"));
        assert!(m("", ""));
    }

    #[test]
    fn pathological_patterns_finish_fast() {
        let text = "a".repeat(20_000);
        let pattern = format!("{}b", "*a".repeat(200));
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &text));
        assert!(!m(&format!("{}c", "a*".repeat(1_000)), &"ab".repeat(5_000)));
        assert!(m(&"*?".repeat(500), &text));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
