//! CometBFT's event query language: the `query` of the websocket `subscribe` and
//! `unsubscribe` calls. The node keys a client's subscriptions by the rendering of the
//! parsed query, not by the text the client sent, so telling two subscriptions apart here
//! takes the same parse and the same rendering. Both follow CometBFT v0.38.10 and later
//! (`libs/pubsub/query/syntax`), quirks included, and errors are worded as the node's.

use std::fmt;

use stamp::check_stamp;

mod stamp;

/// A parsed query, kept as what the gateway needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Query {
    canonical: String,
    new_block: bool,
}

/// Why a query does not parse, worded as the node words it after "failed to parse query: ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueryError(String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

impl Query {
    pub(crate) fn parse(text: &str) -> Result<Query, QueryError> {
        let mut parser = Parser::new(text);
        let mut conditions = vec![parser.condition()?];
        loop {
            // The node stops at the first end of input its scanner reports, and an
            // unterminated string reports just that: a dangling `'...` where an AND could
            // come is ignored there, so it is here.
            let got = match parser.next() {
                Err(ScanError::Eof) => break,
                Ok(token) if token.kind == AND => {
                    conditions.push(parser.condition()?);
                    continue;
                }
                Ok(token) => token.kind,
                Err(ScanError::Bad(_)) => INVALID,
            };
            return Err(parser.error(format_args!("got {}, want {}", got.0, AND.0)));
        }
        let rendered: Vec<String> = conditions.iter().map(Condition::render).collect();
        Ok(Query {
            canonical: rendered.join(" AND "),
            new_block: conditions.iter().any(Condition::is_new_block),
        })
    }

    /// The spelling CometBFT keys subscriptions by: equal for two spellings of one query.
    pub(crate) fn canonical(&self) -> &str {
        &self.canonical
    }

    /// True when the query can only match NewBlock events (it has the condition
    /// tm.event = 'NewBlock').
    pub(crate) fn is_new_block(&self) -> bool {
        self.new_block
    }
}

/// A token's kind, known by the name the node's error messages give it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Kind(&'static str);

const INVALID: Kind = Kind("invalid token");
const TAG: Kind = Kind("tag");
const STRING: Kind = Kind("string");
const NUMBER: Kind = Kind("number");
const TIMESTAMP: Kind = Kind("timestamp");
const DATESTAMP: Kind = Kind("datestamp");
const AND: Kind = Kind("AND operator");
const CONTAINS: Kind = Kind("CONTAINS operator");
const EXISTS: Kind = Kind("EXISTS operator");
const EQ: Kind = Kind("= operator");
const LT: Kind = Kind("< operator");
const LEQ: Kind = Kind("<= operator");
const GT: Kind = Kind("> operator");
const GEQ: Kind = Kind(">= operator");

/// `text` is what the canonical form prints: a string without its quotes, a stamp
/// without its TIME or DATE, anything else as written.
#[derive(Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

enum ScanError {
    /// The end of the input, also what an unterminated string reports.
    Eof,
    Bad(String),
}

/// Scans and parses in one pass. Offsets are in bytes, as the node counts them.
struct Parser<'a> {
    src: &'a str,
    /// Where the current token starts, past any whitespace.
    pos: usize,
    end: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Parser<'a> {
        Parser {
            src,
            pos: 0,
            end: 0,
        }
    }

    fn next(&mut self) -> Result<Token<'a>, ScanError> {
        self.pos = self.end;
        while let Some(ch) = self.peek() {
            let start = self.end;
            self.end += ch.len_utf8();
            if ch.is_whitespace() {
                self.pos = self.end;
                continue;
            }
            return match ch {
                '0'..='9' => Ok(self.number(start)),
                '\'' => self.string(),
                '<' | '>' | '=' => Ok(self.compare(ch, start)),
                _ if is_first_tag_char(ch) => self.word(start),
                // The node gives the offset just past the character.
                _ => Err(ScanError::Bad(format!(
                    "invalid input {ch} at offset {}",
                    self.end
                ))),
            };
        }
        Err(ScanError::Eof)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.end..].chars().next()
    }

    fn skip_while(&mut self, ok: impl Fn(char) -> bool) -> &'a str {
        let start = self.end;
        let rest = &self.src[start..];
        self.end += rest.find(|c: char| !ok(c)).unwrap_or(rest.len());
        &self.src[start..self.end]
    }

    fn token(&self, kind: Kind, start: usize) -> Token<'a> {
        let text = &self.src[start..self.end];
        Token { kind, text }
    }

    /// No sign, and a point may end it ("5."): the node's scanner takes both as written.
    fn number(&mut self, start: usize) -> Token<'a> {
        self.skip_while(|c| c.is_ascii_digit());
        if self.peek() == Some('.') {
            self.end += 1;
            self.skip_while(|c| c.is_ascii_digit());
        }
        self.token(NUMBER, start)
    }

    /// No escapes: a string runs to the next quote, so it can never hold one.
    fn string(&mut self) -> Result<Token<'a>, ScanError> {
        let rest = &self.src[self.end..];
        let Some(close) = rest.find('\'') else {
            self.end = self.src.len();
            return Err(ScanError::Eof);
        };
        self.end += close + 1;
        let text = &rest[..close];
        Ok(Token { kind: STRING, text })
    }

    fn compare(&mut self, first: char, start: usize) -> Token<'a> {
        let or_equal = first != '=' && self.peek() == Some('=');
        self.end += usize::from(or_equal);
        let kind = match (first, or_equal) {
            ('=', _) => EQ,
            ('<', false) => LT,
            ('<', true) => LEQ,
            (_, false) => GT,
            (_, true) => GEQ,
        };
        self.token(kind, start)
    }

    /// Keywords are upper case only and whole words: `and` or `ANDx` is a tag.
    fn word(&mut self, start: usize) -> Result<Token<'a>, ScanError> {
        self.skip_while(is_tag_char);
        let text = &self.src[start..self.end];
        // Only one plain space after TIME or DATE makes a stamp; otherwise they are tags.
        let stamp = self.peek() == Some(' ');
        let kind = match text {
            "TIME" if stamp => return self.stamp(TIMESTAMP),
            "DATE" if stamp => return self.stamp(DATESTAMP),
            "AND" => AND,
            "EXISTS" => EXISTS,
            "CONTAINS" => CONTAINS,
            _ => TAG,
        };
        Ok(Token { kind, text })
    }

    /// The node's TIME is Go's RFC 3339 layout, its DATE "2006-01-02".
    fn stamp(&mut self, kind: Kind) -> Result<Token<'a>, ScanError> {
        let (keyword, marks, layout) = match kind {
            TIMESTAMP => ("TIME", "-T:+Z", "2006-01-02T15:04:05Z07:00"),
            _ => ("DATE", "-", "2006-01-02"),
        };
        self.end += 1;
        let text = self.skip_while(|c| c.is_ascii_digit() || marks.contains(c));
        let why = match check_stamp(layout, text) {
            Ok(year) if (1900..=2999).contains(&year) => return Ok(Token { kind, text }),
            Ok(year) => format!("{} year {year} out of range", kind.0),
            Err(why) => format!("invalid {keyword} value: {why}"),
        };
        Err(ScanError::Bad(why))
    }

    // The grammar, over the tokens above.

    fn error(&self, why: impl fmt::Display) -> QueryError {
        QueryError(format!("offset {}: {why}", self.pos))
    }

    fn require(&mut self, wanted: &[Kind]) -> Result<Token<'a>, QueryError> {
        let token = match self.next() {
            Ok(token) => token,
            Err(ScanError::Eof) => return Err(self.error("EOF")),
            Err(ScanError::Bad(why)) => return Err(self.error(why)),
        };
        if wanted.contains(&token.kind) {
            return Ok(token);
        }
        let names: Vec<&str> = wanted.iter().map(|kind| kind.0).collect();
        let wanted = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        Err(self.error(format_args!("got {}, wanted {wanted}", token.kind.0)))
    }

    fn condition(&mut self) -> Result<Condition<'a>, QueryError> {
        let tag = self.require(&[TAG])?.text;
        let op = self.require(&[LEQ, GEQ, LT, GT, EQ, CONTAINS, EXISTS])?;
        let args: &[Kind] = match op.kind {
            EQ => &[NUMBER, TIMESTAMP, DATESTAMP, STRING],
            CONTAINS => &[STRING],
            EXISTS => return Ok(Condition { tag, op, arg: None }),
            _ => &[NUMBER, TIMESTAMP, DATESTAMP],
        };
        let arg = Some(self.require(args)?);
        Ok(Condition { tag, op, arg })
    }
}

/// Go's `unicode.IsLetter || unicode.IsDigit` (categories L and Nd). Exact for Latin-1;
/// std has no general category beyond it, and `is_alphanumeric` also takes Nl, No and
/// some marks: better to pass an odd tag on to the node than to refuse one it takes.
fn is_letter_or_digit(c: char) -> bool {
    let beyond_latin1 = u32::from(c) > 0xff;
    c.is_ascii_alphanumeric()
        || (!c.is_ascii() && c.is_alphabetic())
        || (beyond_latin1 && c.is_numeric())
}

/// Since v0.38.10 a tag may hold a dash but not start with a dash or a point.
fn is_first_tag_char(c: char) -> bool {
    c == '_' || is_letter_or_digit(c)
}

fn is_tag_char(c: char) -> bool {
    matches!(c, '.' | '_' | '-') || is_letter_or_digit(c)
}

struct Condition<'a> {
    tag: &'a str,
    op: Token<'a>,
    arg: Option<Token<'a>>,
}

impl Condition<'_> {
    /// The node's rendering: single spaces, strings in single quotes, numbers and stamps
    /// as written.
    fn render(&self) -> String {
        let Some(arg) = self.arg else {
            return [self.tag, " ", self.op.text].concat();
        };
        let (before, after) = match arg.kind {
            STRING => ("'", "'"),
            TIMESTAMP => ("TIME ", ""),
            DATESTAMP => ("DATE ", ""),
            _ => ("", ""),
        };
        [self.tag, " ", self.op.text, " ", before, arg.text, after].concat()
    }

    fn is_new_block(&self) -> bool {
        let new_block = |arg: Token| arg.kind == STRING && arg.text == "NewBlock";
        self.tag == "tm.event" && self.op.kind == EQ && self.arg.is_some_and(new_block)
    }
}

#[cfg(test)]
mod tests;
