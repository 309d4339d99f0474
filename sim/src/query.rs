//! The subset of CometBFT's event query language the node needs: `tag op value`
//! conditions joined by `AND`, matched against composite-key event maps.

use std::collections::BTreeMap;

/// CometBFT's `maxQueryLength`.
pub(crate) const MAX_QUERY_LENGTH: usize = 512;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Exists,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operand {
    Str(String),
    Num(f64),
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Condition {
    pub(crate) tag: String,
    pub(crate) op: Op,
    pub(crate) arg: Operand,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Query {
    pub(crate) conditions: Vec<Condition>,
}

/// Composite key (`type.attr`) to every value carried under it.
pub(crate) type EventMap = BTreeMap<String, Vec<String>>;

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn err(&self, got: &str, wanted: &str) -> String {
        format!("offset {}: got {got}, wanted {wanted}", self.pos + 1)
    }
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.s[self.pos..].chars().next() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }
}

fn is_tag_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '=' | '<' | '>' | '\'' | '(' | ')')
}

pub(crate) fn parse(text: &str) -> Result<Query, String> {
    let mut lx = Lexer { s: text, pos: 0 };
    let mut conditions = Vec::new();
    loop {
        lx.skip_ws();
        let tag = lx.take_while(is_tag_char);
        if tag.is_empty() {
            let got = if lx.pos >= text.len() {
                "end of input"
            } else {
                "unexpected token"
            };
            return Err(lx.err(got, "tag"));
        }
        lx.skip_ws();
        let rest = &text[lx.pos..];
        let (op, len) = if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else if rest.starts_with("CONTAINS") {
            (Op::Contains, 8)
        } else if rest.starts_with("EXISTS") {
            (Op::Exists, 6)
        } else {
            return Err(lx.err(
                "tag",
                "<= operator, >= operator, < operator, > operator, = operator, CONTAINS operator or EXISTS operator",
            ));
        };
        lx.pos += len;
        lx.skip_ws();
        let arg = if op == Op::Exists {
            Operand::None
        } else if lx.s[lx.pos..].starts_with('\'') {
            lx.pos += 1;
            let v = lx.take_while(|c| c != '\'');
            if !lx.s[lx.pos..].starts_with('\'') {
                return Err(lx.err("end of input", "closing quote"));
            }
            lx.pos += 1;
            Operand::Str(v.to_string())
        } else {
            let v = lx.take_while(|c| c.is_ascii_digit() || c == '.' || c == '-');
            match v.parse::<f64>() {
                Ok(n) => Operand::Num(n),
                Err(_) => return Err(lx.err("unexpected token", "number or string")),
            }
        };
        if op == Op::Contains && !matches!(arg, Operand::Str(_)) {
            return Err(lx.err("number", "string"));
        }
        conditions.push(Condition {
            tag: tag.to_string(),
            op,
            arg,
        });
        lx.skip_ws();
        if lx.pos >= text.len() {
            return Ok(Query { conditions });
        }
        if !text[lx.pos..].starts_with("AND") {
            return Err(lx.err("unexpected token", "AND"));
        }
        lx.pos += 3;
    }
}

impl Condition {
    fn matches_value(&self, v: &str) -> bool {
        match (&self.op, &self.arg) {
            (Op::Exists, _) => true,
            (Op::Contains, Operand::Str(s)) => v.contains(s.as_str()),
            (Op::Eq, Operand::Str(s)) => v == s,
            (op, Operand::Num(n)) => {
                let Ok(x) = v.parse::<f64>() else {
                    return false;
                };
                match op {
                    Op::Eq => x == *n,
                    Op::Lt => x < *n,
                    Op::Le => x <= *n,
                    Op::Gt => x > *n,
                    Op::Ge => x >= *n,
                    _ => false,
                }
            }
            (op, Operand::Str(s)) => match op {
                Op::Lt => v < s.as_str(),
                Op::Le => v <= s.as_str(),
                Op::Gt => v > s.as_str(),
                Op::Ge => v >= s.as_str(),
                _ => false,
            },
            _ => false,
        }
    }
}

impl Query {
    pub(crate) fn matches(&self, events: &EventMap) -> bool {
        self.conditions.iter().all(|c| {
            events
                .get(&c.tag)
                .is_some_and(|vals| vals.iter().any(|v| c.matches_value(v)))
        })
    }

    /// Inclusive bounds implied by the conditions on `tag` (e.g. `tx.height`).
    pub(crate) fn bounds(&self, tag: &str, lo: u64, hi: u64) -> (u64, u64) {
        let (mut lo, mut hi) = (lo, hi);
        for c in self.conditions.iter().filter(|c| c.tag == tag) {
            let Operand::Num(n) = c.arg else { continue };
            let n = n.max(0.0);
            match c.op {
                Op::Eq => {
                    lo = lo.max(n.ceil() as u64);
                    hi = hi.min(n.floor() as u64);
                }
                // A float past u64 saturates: past every height, not wrapped to 0.
                Op::Gt => lo = lo.max((n.floor() as u64).saturating_add(1)),
                Op::Ge => lo = lo.max(n.ceil() as u64),
                Op::Lt => hi = hi.min((n.ceil() as u64).saturating_sub(1)),
                Op::Le => hi = hi.min(n.floor() as u64),
                _ => {}
            }
        }
        (lo, hi)
    }

    pub(crate) fn condition_on(&self, tag: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.tag == tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let q = parse("tx.height>=5 AND tx.height<8 AND app.key='k1'").unwrap();
        assert_eq!(q.bounds("tx.height", 1, 100), (5, 7));
        let mut ev = EventMap::new();
        ev.insert("tx.height".into(), vec!["6".into()]);
        ev.insert("app.key".into(), vec!["k1".into()]);
        assert!(q.matches(&ev));
        ev.insert("app.key".into(), vec!["k2".into()]);
        assert!(!q.matches(&ev));
        assert!(parse("tm.event = 'NewBlock'").is_ok());
        assert!(parse("tm.event NewBlock")
            .unwrap_err()
            .contains("wanted <= operator"));
        assert!(parse("").is_err());
    }
}
