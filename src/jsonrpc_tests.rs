use super::*;

fn single(body: &str) -> Call {
    match parse_body(body.as_bytes()).expect("parses") {
        Envelope::Single(c) => c,
        other => panic!("expected single, got {other:?}"),
    }
}

#[test]
fn ids_of_every_accepted_type_are_kept_byte_for_byte() {
    for id in [
        r#""a\"b\u00e9""#,
        "1",
        "-7",
        "1.50",
        "1e3",
        "123456789012345678901234567890",
    ] {
        let c = single(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"status"}}"#
        ));
        assert_eq!(c.id.unwrap().as_bytes(), id.as_bytes());
    }
}

#[test]
fn ids_out_of_a_floats_range_fail_the_body() {
    for id in ["1e99999", "-123456789012345678901234567890e400"] {
        let e = parse_body(format!(r#"{{"id":{id},"method":"status"}}"#).as_bytes()).unwrap_err();
        assert!(e.0.contains("out of range"), "{}", e.0);
    }
}

#[test]
fn a_null_or_missing_id_is_a_notification() {
    assert_eq!(single(r#"{"id":null,"method":"status"}"#).id, None);
    assert_eq!(single(r#"{"method":"status"}"#).id, None);
}

#[test]
fn object_ids_fail_the_whole_body_as_on_the_node() {
    let e = parse_body(br#"[{"id":1,"method":"a"},{"id":{},"method":"b"}]"#).unwrap_err();
    assert!(e.0.contains("unknown type"), "{}", e.0);
}

#[test]
fn params_by_name_position_null_and_junk() {
    assert!(matches!(
        single(r#"{"id":1,"method":"m","params":{"a":"1"}}"#).params,
        Params::Named(_)
    ));
    assert!(matches!(
        single(r#"{"id":1,"method":"m","params":["1"]}"#).params,
        Params::Positional(_)
    ));
    assert_eq!(
        single(r#"{"id":1,"method":"m","params":null}"#).params,
        Params::Absent
    );
    assert!(matches!(
        single(r#"{"id":1,"method":"m","params":5}"#).params,
        Params::Malformed(_)
    ));
}

#[test]
fn a_one_element_batch_stays_a_batch() {
    let env = parse_body(br#" [{"id":1,"method":"status"}]"#).unwrap();
    assert!(matches!(env, Envelope::Batch(ref v) if v.len() == 1));
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Params past serde_json's recursion limit are malformed params (-32602 later)...
    let call = single(&format!(r#"{{"id":1,"method":"m","params":{deep}}}"#));
    assert!(
        matches!(call.params, Params::Malformed(_)),
        "{:?}",
        call.params
    );
    // ...and a body that is itself too deep is a parse error.
    assert!(parse_body(deep.as_bytes()).is_err());
}

#[test]
fn uri_queries_decode_like_go_and_keep_the_first_repeat() {
    let c = parse_uri(
        "/tx_search",
        Some("query=%22tx.height%3E1%22&per_page=30&per_page=99&x=a+b"),
    );
    let Params::Query(args) = c.params else {
        panic!()
    };
    assert_eq!(
        args,
        vec![
            ("query".into(), "\"tx.height>1\"".into()),
            ("per_page".into(), "30".into()),
            ("x".into(), "a b".into())
        ]
    );
    assert_eq!(c.id, Some(Id::uri()));
    assert_eq!(c.method, "tx_search");
}

#[test]
fn replies_are_cometbft_shaped() {
    let e = error_body(None, -32700, "Parse error. Invalid JSON", "bad \"x\"");
    assert_eq!(
        &e[..],
        br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error. Invalid JSON","data":"bad \"x\""}}"#
    );
    let e = error_body(Some(&Id::uri()), -32601, "Method not found", "");
    assert_eq!(
        &e[..],
        br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32601,"message":"Method not found"}}"#
    );
}

#[test]
fn a_batch_is_counted_as_parse_body_would_build_it() {
    let huge = format!("[{}{{}}]", "{},".repeat(333_000));
    assert_eq!(batch_len(huge.as_bytes()), Some(333_001));
    assert_eq!(batch_len(b" [ ] "), Some(0));
    assert_eq!(batch_len(br#"[{"id":1,"method":"status"}]"#), Some(1));
    assert_eq!(batch_len(br#"{"id":1,"method":"status"}"#), None);
    assert_eq!(
        batch_len(b"[1,2]"),
        None,
        "not calls: a parse error, as the node says"
    );
    assert_eq!(batch_len(b"[{}] x"), None);
    assert_eq!(batch_len(b"[{},"), None);
}

#[test]
fn uri_pairs_with_semicolons_are_dropped_as_go_drops_them() {
    let Params::Query(args) = parse_uri("/block", Some("height=5;x=1&page=2")).params else {
        panic!()
    };
    assert_eq!(args, vec![("page".into(), "2".into())]);
}

#[test]
fn uri_bytes_that_are_not_utf8_refuse_the_call_instead_of_changing_it() {
    let c = parse_uri("/abci_query", Some("path=%22/x%22&data=%22%FF%FE%22"));
    let Params::Malformed(why) = c.params else {
        panic!("{:?}", c.params)
    };
    assert!(why.contains("argument data"), "{why}");
    assert!(matches!(
        parse_uri("/abci_query", Some("data=0xFFFE")).params,
        Params::Query(_)
    ));
}
