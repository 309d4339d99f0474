//! Answer parsing: ids, batches, and who owns the bytes.

use super::*;

#[test]
fn results_are_zero_copy_slices_of_the_body() {
    let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":3,"result":{"a":[1,2]}}"#);
    let raw: RawAnswer = serde_json::from_slice(&body).unwrap();
    let Answer::Result(r) = answer_for(&body, raw, 3).unwrap() else {
        panic!()
    };
    assert_eq!(&r[..], br#"{"a":[1,2]}"#);
    assert_eq!(r.as_ptr(), body[33..].as_ptr());
}

#[test]
fn a_batch_answer_is_taken_as_an_array_of_any_length() {
    let two = Bytes::from_static(
        br#"[{"jsonrpc":"2.0","id":8,"result":"b"},{"jsonrpc":"2.0","id":7,"result":"a"}]"#,
    );
    let answers = batch_answers(&two, 7, 2).unwrap();
    assert_eq!(answers[0], Answer::Result(Bytes::from_static(b"\"a\"")));
    assert_eq!(answers[1], Answer::Result(Bytes::from_static(b"\"b\"")));
    // A spec-compliant node (or another proxy) answers a batch of one with an array.
    let one = Bytes::from_static(br#" [{"jsonrpc":"2.0","id":7,"result":"a"}]"#);
    assert_eq!(
        batch_answers(&one, 7, 1).unwrap(),
        vec![Answer::Result(Bytes::from_static(b"\"a\""))]
    );
}

#[test]
fn a_batch_of_one_is_also_taken_as_a_bare_object() {
    // CometBFT's own shape.
    let bare = Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"result":"a"}"#);
    assert_eq!(
        batch_answers(&bare, 7, 1).unwrap(),
        vec![Answer::Result(Bytes::from_static(b"\"a\""))]
    );
    // Only for a batch of one: a bare object cannot answer two calls.
    assert!(batch_answers(&bare, 7, 2).is_err());
}

#[test]
fn a_batch_answer_with_a_foreign_or_missing_id_is_refused() {
    let foreign = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":9,"result":"a"}]"#);
    assert!(batch_answers(&foreign, 7, 2).is_err());
    let short = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":7,"result":"a"}]"#);
    assert!(batch_answers(&short, 7, 2).is_err());
}

#[test]
fn a_wrong_id_is_refused() {
    let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":4,"result":{}}"#);
    let raw: RawAnswer = serde_json::from_slice(&body).unwrap();
    assert!(matches!(
        answer_for(&body, raw, 3),
        Err(Rejection::UpstreamInvalid(_))
    ));
}

#[test]
fn errors_keep_the_nodes_object_and_take_the_callers_id() {
    let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal error","data":"x"}}"#);
    let raw: RawAnswer = serde_json::from_slice(&body).unwrap();
    let a = answer_for(&body, raw, 1).unwrap();
    let out = a.parts(&Id::uri()).concat();
    assert_eq!(
        out,
        br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"x"}}"#.to_vec()
    );
}

#[test]
fn an_answer_shares_its_body_only_where_the_body_holds_little_else() {
    let result = format!("\"{}\"", "x".repeat(4096));
    let single = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":3,"result":{result}}}"#));
    let raw: RawAnswer = serde_json::from_slice(&single).unwrap();
    let Answer::Result(r) = answer_for(&single, raw, 3).unwrap() else {
        panic!()
    };
    assert_eq!(
        r.as_ptr(),
        single[33..].as_ptr(),
        "a single answer is not copied"
    );
    // A batch's answers would keep each other alive: each is copied out.
    let batch = Bytes::from(format!(
        r#"[{{"jsonrpc":"2.0","id":7,"result":{result}}},{{"jsonrpc":"2.0","id":8,"result":{result}}}]"#
    ));
    let answers = batch_answers(&batch, 7, 2).unwrap();
    let within = |b: &Bytes| batch.as_ptr_range().contains(&b.as_ptr());
    for answer in &answers {
        let Answer::Result(b) = answer else { panic!() };
        assert_eq!(&b[..], result.as_bytes());
        assert!(!within(b), "a batch entry owns its bytes");
    }
}
