//! Go's `url.Values` parsing for the URI form: `&`-separated pairs (one holding `;` is
//! dropped, as Go 1.17+ does), `+` as space, percent-decoding, malformed pairs skipped,
//! first value wins at lookup.

pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty() && !p.contains(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((unescape(k)?, unescape(v)?))
        })
        .collect()
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_like_query() {
        let q = parse_query("query=%22tx.height%3E1%22&per_page=30&bad=%zz&x=a+b");
        assert_eq!(q[0], ("query".into(), "\"tx.height>1\"".into()));
        assert_eq!(q[1], ("per_page".into(), "30".into()));
        assert_eq!(q[2], ("x".into(), "a b".into()));
    }
}
