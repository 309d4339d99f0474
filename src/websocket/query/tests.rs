//! The query parser against what CometBFT v0.38 answers: the canonical rendering of real
//! queries, its errors word for word, and generated queries and noise.

use proptest::prelude::*;

use super::*;

fn canonical(text: &str) -> String {
    match Query::parse(text) {
        Ok(query) => query.canonical().to_owned(),
        Err(e) => panic!("{text:?} does not parse: {e}"),
    }
}

fn error(text: &str) -> String {
    match Query::parse(text) {
        Ok(query) => panic!("{text:?} parses, as {:?}", query.canonical()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn real_queries_render_as_the_node_keys_them() {
    let cases = [
        ("tm.event='NewBlock'", "tm.event = 'NewBlock'"),
        (
            "tm.event = 'Tx' AND tx.height > 5",
            "tm.event = 'Tx' AND tx.height > 5",
        ),
        (
            "tm.event='Tx' AND transfer.recipient='cosmos1x3yv4mf9p0wfhrsq0lmhx9'",
            "tm.event = 'Tx' AND transfer.recipient = 'cosmos1x3yv4mf9p0wfhrsq0lmhx9'",
        ),
        (
            "message.action CONTAINS 'send'",
            "message.action CONTAINS 'send'",
        ),
        (
            "message.module CONTAINS'bank'",
            "message.module CONTAINS 'bank'",
        ),
        ("tx.hash EXISTS", "tx.hash EXISTS"),
        (
            "block.time >= TIME 2013-05-03T14:45:00Z",
            "block.time >= TIME 2013-05-03T14:45:00Z",
        ),
        (
            "block.time<TIME 2013-05-03T14:45:00+07:00",
            "block.time < TIME 2013-05-03T14:45:00+07:00",
        ),
        (
            "account.date < DATE 2017-01-01",
            "account.date < DATE 2017-01-01",
        ),
        ("tx.fee<=0.25", "tx.fee <= 0.25"),
        // Numbers stay as written: the node renders the text it scanned.
        ("x.amount = 007", "x.amount = 007"),
        ("x.amount = 5.", "x.amount = 5."),
        (
            "cosm-wasm.transfer_amount=100",
            "cosm-wasm.transfer_amount = 100",
        ),
        (
            "wasm-execute._contract_address EXISTS",
            "wasm-execute._contract_address EXISTS",
        ),
        ("memo = 'a \"b\"  c ü'", "memo = 'a \"b\"  c ü'"),
        ("memo = ''", "memo = ''"),
        ("and EXISTS AND or EXISTS", "and EXISTS AND or EXISTS"),
        // Go's "15" takes one digit, and offsets may reach 24 hours.
        (
            "t = TIME 2013-05-03T4:45:00-24:00",
            "t = TIME 2013-05-03T4:45:00-24:00",
        ),
        ("d = DATE 2024-02-29", "d = DATE 2024-02-29"),
    ];
    for (text, want) in cases {
        assert_eq!(canonical(text), want, "{text:?}");
        assert_eq!(canonical(want), want, "{want:?} re-parses to itself");
    }
}

#[test]
fn spellings_of_one_query_are_one_query() {
    let plain = Query::parse("tm.event = 'Tx' AND tx.height >= 5").unwrap();
    for text in [
        "tm.event='Tx' AND tx.height>=5",
        "  tm.event\t=\n'Tx'\r\nAND   tx.height >=5  ",
        "tm.event\u{3000}=\u{a0}'Tx'AND tx.height>= 5",
        "tm.event = 'Tx' AND tx.height >= 5",
    ] {
        assert_eq!(Query::parse(text).unwrap(), plain, "{text:?}");
    }
    assert_ne!(
        plain,
        Query::parse("tm.event = 'Tx' AND tx.height >= 05").unwrap()
    );
    assert_ne!(
        plain,
        Query::parse("tx.height >= 5 AND tm.event = 'Tx'").unwrap()
    );
}

#[test]
fn only_an_equal_new_block_is_new_block() {
    for (text, want) in [
        ("tm.event='NewBlock'", true),
        ("tm.event = 'Tx' AND tm.event = 'NewBlock'", true),
        ("tm.event='NewBlockHeader'", false),
        ("tm.event CONTAINS 'NewBlock'", false),
        ("tm.event EXISTS", false),
        ("tm.events = 'NewBlock'", false),
        ("tm.event='Tx'", false),
    ] {
        assert_eq!(Query::parse(text).unwrap().is_new_block(), want, "{text:?}");
    }
}

#[test]
fn malformed_queries_fail_with_the_nodes_words() {
    let cases = [
        ("", "offset 0: EOF"),
        ("   ", "offset 3: EOF"),
        ("tm.event='NewBlock", "offset 9: EOF"),
        ("tm.event", "offset 8: EOF"),
        ("tm.event =", "offset 10: EOF"),
        ("tm.event='NewBlock' AND", "offset 23: EOF"),
        ("tm.event='NewBlock' AND ", "offset 24: EOF"),
        (
            "tm.event='NewBlock' and x EXISTS",
            "offset 20: got tag, want AND operator",
        ),
        ("x EXISTS 5", "offset 9: got number, want AND operator"),
        ("= 'x'", "offset 0: got = operator, wanted tag"),
        ("AND x EXISTS", "offset 0: got AND operator, wanted tag"),
        ("tx.height > -5", "offset 12: invalid input - at offset 13"),
        (
            "tx.height > 'x'",
            "offset 12: got string, wanted number, timestamp or datestamp",
        ),
        ("x CONTAINS 5", "offset 11: got number, wanted string"),
        (
            "x == 'a'",
            "offset 3: got = operator, wanted number, timestamp, datestamp or string",
        ),
        (
            "x = 1.2.3",
            "offset 7: got invalid token, want AND operator",
        ),
        // No escapes: a quote always ends a string.
        ("x = 'it''s'", "offset 8: got string, want AND operator"),
        (".x EXISTS", "offset 0: invalid input . at offset 1"),
        ("!!!", "offset 0: invalid input ! at offset 1"),
        // Offsets count bytes: ü is two, the snowman three.
        (
            "ü EXISTS ☃",
            "offset 10: got invalid token, want AND operator",
        ),
        (
            "x = 'ü' ☃",
            "offset 9: got invalid token, want AND operator",
        ),
        // Only a plain space makes TIME a stamp; a tab leaves it a tag.
        (
            "x = TIME\t2013-05-03T14:45:00Z",
            "offset 4: got tag, wanted number, timestamp, datestamp or string",
        ),
        (
            "x = DATE 2017-13-01",
            "offset 4: invalid DATE value: parsing time \"2017-13-01\": month out of range",
        ),
        (
            "x = DATE 2017-02-29",
            "offset 4: invalid DATE value: parsing time \"2017-02-29\": day out of range",
        ),
        (
            "x = DATE 2017-1-01",
            "offset 4: invalid DATE value: parsing time \"2017-1-01\" as \"2006-01-02\": \
             cannot parse \"1-01\" as \"01\"",
        ),
        (
            "x = DATE 20130503",
            "offset 4: invalid DATE value: parsing time \"20130503\" as \"2006-01-02\": \
             cannot parse \"0503\" as \"-\"",
        ),
        (
            "x = DATE 1800-01-01",
            "offset 4: datestamp year 1800 out of range",
        ),
        (
            "x = TIME 2013-05-03T14:45:00",
            "offset 4: invalid TIME value: parsing time \"2013-05-03T14:45:00\" as \
             \"2006-01-02T15:04:05Z07:00\": cannot parse \"\" as \"Z07:00\"",
        ),
        (
            "x = TIME 2013-05-03T25:45:00Z",
            "offset 4: invalid TIME value: parsing time \"2013-05-03T25:45:00Z\": \
             hour out of range",
        ),
        (
            "x = TIME 2013-05-03T14:45:00+25:00",
            "offset 4: invalid TIME value: parsing time \"2013-05-03T14:45:00+25:00\": \
             time zone offset hour out of range",
        ),
        (
            "x = TIME 2013-05-03T14:45:00ZZ",
            "offset 4: invalid TIME value: parsing time \"2013-05-03T14:45:00ZZ\": \
             extra text: \"Z\"",
        ),
        (
            "x = TIME 2013-05-03T14:45:00.5Z",
            "offset 4: invalid TIME value: parsing time \"2013-05-03T14:45:00\" as \
             \"2006-01-02T15:04:05Z07:00\": cannot parse \"\" as \"Z07:00\"",
        ),
        (
            "x = TIME 3013-05-03T14:45:00Z",
            "offset 4: timestamp year 3013 out of range",
        ),
        (
            "x = TIME  2013-05-03T14:45:00Z",
            "offset 4: invalid TIME value: parsing time \"\" as \"2006-01-02T15:04:05Z07:00\": \
             cannot parse \"\" as \"2006\"",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text:?}");
    }
    assert_eq!(
        error("tm.event 'NewBlock'"),
        "offset 9: got string, wanted <= operator, >= operator, < operator, > operator, \
         = operator, CONTAINS operator or EXISTS operator"
    );
}

#[test]
fn length_is_the_callers_to_check() {
    let long = format!("memo = '{}'", "a".repeat(512));
    assert_eq!(canonical(&long), long);
}

/// Quirks of the node's parser, kept because the node keys subscriptions by them.
#[test]
fn the_nodes_quirks_are_kept() {
    // Its parser stops at the end of input as its scanner reports it, and an unterminated
    // string reports just that.
    assert_eq!(canonical("tx.hash EXISTS 'dangling"), "tx.hash EXISTS");
    // TIME without a space after it is a tag, whose rendering then does not re-parse.
    assert_eq!(canonical("TIME=5"), "TIME = 5");
    assert!(Query::parse("TIME = 5").is_err());
    // Tokens need no space between them where they cannot run together.
    assert_eq!(canonical("x>5AND y EXISTS"), "x > 5 AND y EXISTS");
    assert!(error("x EXISTSAND y EXISTS").starts_with("offset 2: got tag, wanted <="));
}

#[derive(Clone, Debug)]
struct Cond {
    tag: String,
    op: &'static str,
    arg: Option<String>,
}

fn tag() -> impl Strategy<Value = String> {
    // Lower case first: no keyword (AND, EXISTS, TIME ...) can come out as a tag.
    "[a-z_][a-zA-Z0-9._-]{0,12}|[a-zé][a-zé0-9.]{0,3}"
}

fn ordered() -> impl Strategy<Value = String> {
    let number = "[0-9]{1,6}(\\.[0-9]{0,4})?";
    let date = (1900u32..=2999, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    let zone = prop_oneof![
        Just("Z".to_owned()),
        ("[+-]", 0u32..=24, 0u32..=59).prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
    ];
    let clock =
        (0u32..=23, 0u32..=59, 0u32..=59).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}"));
    prop_oneof![
        number,
        date.clone().prop_map(|d| format!("DATE {d}")),
        (date, clock, zone).prop_map(|(d, c, z)| format!("TIME {d}T{c}{z}")),
    ]
}

fn condition() -> impl Strategy<Value = Cond> {
    let quoted = "[^']{0,10}".prop_map(|s| format!("'{s}'"));
    let op_arg = prop_oneof![
        Just(("EXISTS", None)),
        quoted.clone().prop_map(|s| ("CONTAINS", Some(s))),
        prop_oneof![quoted, ordered()].prop_map(|a| ("=", Some(a))),
        (prop::sample::select(vec!["<", "<=", ">", ">="]), ordered())
            .prop_map(|(op, a)| (op, Some(a))),
    ];
    (tag(), op_arg).prop_map(|(tag, (op, arg))| Cond { tag, op, arg })
}

fn spaces() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[ \t\r\n\u{a0}\u{3000}]{0,3}", 64)
}

/// Writes the conditions with the given whitespace, where a word needs some taking at
/// least a space.
fn spell(conds: &[Cond], spaces: &[String]) -> String {
    let mut gaps = spaces.iter().cycle();
    let mut gap = |needed: bool| {
        let gap = gaps.next().unwrap();
        if needed && gap.is_empty() {
            " ".to_owned()
        } else {
            gap.clone()
        }
    };
    let mut out = gap(false);
    for (i, c) in conds.iter().enumerate() {
        if i > 0 {
            out += &gap(conds[i - 1].arg.is_none());
            out += "AND";
            out += &gap(true);
        }
        let word_op = c.op.starts_with(|ch: char| ch.is_ascii_uppercase());
        out += &c.tag;
        out += &gap(word_op);
        out += c.op;
        if let Some(arg) = &c.arg {
            out += &gap(false);
            out += arg;
        }
    }
    out + &gap(false)
}

fn render(conds: &[Cond]) -> String {
    let parts: Vec<String> = conds
        .iter()
        .map(|c| match &c.arg {
            Some(arg) => format!("{} {} {arg}", c.tag, c.op),
            None => format!("{} {}", c.tag, c.op),
        })
        .collect();
    parts.join(" AND ")
}

proptest! {
    #[test]
    fn generated_queries_parse_to_one_canonical_form(
        conds in prop::collection::vec(condition(), 1..5),
        one in spaces(),
        two in spaces(),
    ) {
        let first = Query::parse(&spell(&conds, &one));
        prop_assert!(first.is_ok(), "{:?}: {:?}", spell(&conds, &one), first);
        let first = first.unwrap();
        prop_assert_eq!(first.canonical(), render(&conds));
        let second = Query::parse(&spell(&conds, &two)).unwrap();
        prop_assert_eq!(&second, &first);
        prop_assert_eq!(&Query::parse(first.canonical()).unwrap(), &first);
    }

    #[test]
    fn noise_never_panics(text in any::<String>()) {
        let _ = Query::parse(&text);
    }

    #[test]
    fn near_queries_never_panic_and_what_parses_renders_stably(
        text in "[a-zA-Z0-9 ._'<>=:+TZ-]{0,40}|(TIME|DATE) [0-9T:Z+-]{0,26}",
        prefix in prop::sample::select(vec!["", "x = ", "x < ", "x EXISTS AND y = "]),
    ) {
        let text = format!("{prefix}{text}");
        if let Ok(query) = Query::parse(&text) {
            // TIME or DATE as a tag renders to text that is a stamp: the node's quirk.
            if let Ok(again) = Query::parse(query.canonical()) {
                prop_assert_eq!(again.canonical(), query.canonical());
            }
        }
    }
}
