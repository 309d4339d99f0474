//! Just enough of CometBFT's event-query language (`tx.height >= 5 AND transfer.sender =
//! 'abc'`) to learn which heights a search may touch, for `max_height_span`.
//!
//! The input is hostile: it is read as bytes, never sliced on a char boundary, and every
//! path through it is a single left-to-right pass, so no string can panic it or make it
//! slow. Anything the node's grammar would not accept is reported as unparsable, and the
//! caller refuses it, since a condition we misread could hide an unbounded scan.
//!
//! Grammar read: `condition (AND condition)*`, where a condition is `tag op value` or
//! `tag EXISTS`, `op` one of `= < <= > >= CONTAINS`, and a value a number, a
//! `'single-quoted string'` (no escapes, as in the node) or `DATE x` / `TIME x`.

/// Inclusive bounds on one height field; `None` where the query leaves that side open.
/// Wide integers so that `> u64::MAX` or `< 0` cannot overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeightBounds {
    pub lower: Option<i128>,
    pub upper: Option<i128>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a [u8]),
    Quoted,
    Op(Op),
}

struct Lexer<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Result<Option<Tok<'a>>, &'static str> {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        let Some(&b) = self.s.get(self.at) else {
            return Ok(None);
        };
        let rest = &self.s[self.at..];
        let (tok, len) = match b {
            b'\'' => match rest[1..].iter().position(|&c| c == b'\'') {
                Some(end) => (Tok::Quoted, end + 2),
                None => return Err("unterminated string"),
            },
            b'<' | b'>' => {
                let eq = rest.get(1) == Some(&b'=');
                let op = match (b, eq) {
                    (b'<', false) => Op::Lt,
                    (b'<', true) => Op::Le,
                    (_, false) => Op::Gt,
                    (_, true) => Op::Ge,
                };
                (Tok::Op(op), 1 + usize::from(eq))
            }
            b'=' => (Tok::Op(Op::Eq), 1),
            _ => {
                let len = rest
                    .iter()
                    .position(|c| {
                        c.is_ascii_whitespace() || matches!(c, b'\'' | b'<' | b'>' | b'=')
                    })
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                let tok = match word {
                    b"CONTAINS" => Tok::Op(Op::Contains),
                    b"EXISTS" => Tok::Op(Op::Exists),
                    _ => Tok::Word(word),
                };
                (tok, len)
            }
        };
        self.at += len;
        Ok(Some(tok))
    }
}

/// A plain non-negative integer literal; anything else (floats, strings, dates) does not
/// bound a height.
fn integer(word: &[u8]) -> Option<i128> {
    if word.is_empty() || word.len() > 30 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    word.iter().try_fold(0i128, |n, d| {
        n.checked_mul(10)?.checked_add(i128::from(d - b'0'))
    })
}

/// The bounds the query puts on `field` (e.g. `tx.height`), or why it cannot be read.
pub(crate) fn height_bounds(query: &str, field: &str) -> Result<HeightBounds, &'static str> {
    let mut lex = Lexer {
        s: query.as_bytes(),
        at: 0,
    };
    let mut bounds = HeightBounds::default();
    loop {
        let tag = match lex.next()? {
            Some(Tok::Word(w)) if !is_keyword(w) => w,
            _ => return Err("expected a condition such as tx.height >= 5"),
        };
        let op = match lex.next()? {
            Some(Tok::Op(op)) => op,
            _ => return Err("expected an operator (=, <, <=, >, >=, CONTAINS, EXISTS)"),
        };
        let value = match op {
            Op::Exists => None,
            _ => match lex.next()? {
                Some(Tok::Quoted) => None,
                Some(Tok::Word(b"DATE" | b"TIME")) => match lex.next()? {
                    Some(Tok::Word(w)) if !is_keyword(w) => None,
                    _ => return Err("expected a date or time after DATE/TIME"),
                },
                Some(Tok::Word(w)) if !is_keyword(w) => Some(integer(w)),
                _ => return Err("expected a value"),
            },
        };
        if tag == field.as_bytes() {
            if let Some(Some(n)) = value {
                bounds.narrow(op, n);
            }
        }
        match lex.next()? {
            None => return Ok(bounds),
            Some(Tok::Word(b"AND")) => {}
            Some(_) => return Err("conditions must be joined by AND"),
        }
    }
}

fn is_keyword(w: &[u8]) -> bool {
    matches!(w, b"AND" | b"DATE" | b"TIME")
}

impl HeightBounds {
    fn narrow(&mut self, op: Op, n: i128) {
        let (lower, upper) = match op {
            Op::Eq => (Some(n), Some(n)),
            Op::Ge => (Some(n), None),
            Op::Gt => (Some(n + 1), None),
            Op::Le => (None, Some(n)),
            Op::Lt => (None, Some(n - 1)),
            Op::Contains | Op::Exists => (None, None),
        };
        if let Some(l) = lower {
            self.lower = Some(self.lower.map_or(l, |old| old.max(l)));
        }
        if let Some(u) = upper {
            self.upper = Some(self.upper.map_or(u, |old| old.min(u)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(q: &str) -> Result<(Option<i128>, Option<i128>), &'static str> {
        height_bounds(q, "tx.height").map(|h| (h.lower, h.upper))
    }

    #[test]
    fn reads_both_sides_of_a_height_range() {
        assert_eq!(
            b("tx.height >= 5 AND tx.height <= 10"),
            Ok((Some(5), Some(10)))
        );
        assert_eq!(b("tx.height>5 AND tx.height<10"), Ok((Some(6), Some(9))));
        assert_eq!(b("tx.height = 7"), Ok((Some(7), Some(7))));
        assert_eq!(
            b("tx.height >= 5 AND tx.height <= 10 AND transfer.sender = 'abc'"),
            Ok((Some(5), Some(10)))
        );
        assert_eq!(
            b("tx.height > 1 AND tx.height > 3 AND tx.height < 100 AND tx.height <= 50"),
            Ok((Some(4), Some(50)))
        );
    }

    #[test]
    fn other_fields_and_values_do_not_bound_the_height() {
        assert_eq!(b("transfer.sender = 'tx.height = 5'"), Ok((None, None)));
        assert_eq!(b("tx.heightx = 5 AND block.height = 3"), Ok((None, None)));
        assert_eq!(b("tx.height = '5'"), Ok((None, None)));
        assert_eq!(b("tx.height = 5.5"), Ok((None, None)));
        assert_eq!(
            b("tx.height EXISTS AND tx.height CONTAINS '1'"),
            Ok((None, None))
        );
        assert_eq!(
            b("tx.time >= TIME 2013-05-03T14:45:00Z AND tx.height <= 9"),
            Ok((None, Some(9)))
        );
        assert_eq!(
            height_bounds("block.height = 3", "block.height"),
            Ok(HeightBounds {
                lower: Some(3),
                upper: Some(3)
            })
        );
    }

    #[test]
    fn extreme_numbers_do_not_overflow() {
        assert_eq!(
            b("tx.height > 18446744073709551615"),
            Ok((Some(18446744073709551616), None))
        );
        assert_eq!(b("tx.height < 0"), Ok((None, Some(-1))));
        assert_eq!(
            b(&format!("tx.height < {}", "9".repeat(40))),
            Ok((None, None))
        );
    }

    #[test]
    fn hostile_strings_are_refused_without_panicking() {
        for q in [
            "",
            "   ",
            "'",
            "tx.height = 'unterminated",
            "tx.height >= 5 OR tx.height <= 10",
            "tx.height >= 5 AND",
            "AND tx.height = 5",
            "tx.height",
            "tx.height >=",
            "tx.height = DATE",
            "= 5",
            "tx.height >= 5 tx.height <= 6",
            "tx.height = 5 AND AND tx.height = 6",
            "é'é'=<>>=<=\u{0}",
        ] {
            assert!(b(q).is_err(), "{q:?} should not parse");
        }
        // Nothing may panic on arbitrary bytes-as-text.
        let alphabet = [
            "tx.height",
            " ",
            "'",
            "<",
            ">=",
            "=",
            "AND",
            "5",
            "é",
            "\u{0}",
            "DATE",
            "EXISTS",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            let mut q = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                q.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = b(&q);
        }
    }
}
