use super::*;

fn post_json(call: Call) -> serde_json::Value {
    match call {
        Call::Post(b) => serde_json::from_slice(&b).unwrap(),
        Call::Get(p) => panic!("expected POST, got {p}"),
    }
}

#[test]
fn storm_asks_three_heavy_questions_at_the_head_the_search_after_status() {
    let mut p = Picker::new(Mix::Storm, Form::Post, 1);
    let status = br#"{"result":{"sync_info":{"latest_block_height":"41"}}}"#;
    let mut searches = 0;
    for i in 0..100 {
        let v = post_json(p.next(42));
        if p.wants_answer() {
            assert_eq!(v["method"], "status");
            // Every other time the answer is lost: the shared head is the fallback.
            if i % 2 == 0 {
                p.observe(status);
            }
            let v = post_json(p.next(42));
            let q = v["params"]["query"].as_str().unwrap();
            assert!(q == "tx.height=41" || q == "tx.height=42", "{q}");
            searches += 1;
            continue;
        }
        match v["method"].as_str().unwrap() {
            "block_results" => assert!(v["params"].get("height").is_none()),
            "abci_query" => assert_eq!(v["params"]["data"], hex::encode("gen-1-0")),
            m => panic!("unexpected {m}"),
        }
    }
    assert!(searches > 10, "{searches}");
}

#[test]
fn lookups_ask_both_heavy_questions_over_the_whole_chain() {
    let mut p = Picker::new(Mix::Lookups, Form::Post, 3);
    let (mut methods, mut heights) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for _ in 0..1000 {
        let v = post_json(p.next(2000));
        assert!(!p.wants_answer());
        let h: u64 = match v["method"].as_str().unwrap() {
            "block_results" => v["params"]["height"].as_str().unwrap().parse().unwrap(),
            "tx_search" => {
                let q = v["params"]["query"].as_str().unwrap();
                q.strip_prefix("tx.height=").unwrap().parse().unwrap()
            }
            m => panic!("unexpected {m}"),
        };
        assert!((1..=2000).contains(&h), "{h}");
        methods.insert(v["method"].to_string());
        heights.insert(h);
    }
    assert_eq!(methods.len(), 2);
    // The cache's chance: few of 1000 calls repeat a question.
    assert!(heights.len() > 700, "{} distinct heights", heights.len());
}

#[test]
fn explorer_heights_stay_recent_and_valid() {
    let mut p = Picker::new(Mix::Explorer, Form::Get, 2);
    let mut seen_head = false;
    for _ in 0..2000 {
        let Call::Get(path) = p.next(500) else {
            panic!("explorer in GET form")
        };
        if let Some(i) = path.find("height=") {
            let h: u64 = path[i + 7..].split('&').next().unwrap().parse().unwrap();
            assert!((401..=500).contains(&h), "{path}");
            seen_head |= h == 500;
        }
    }
    assert!(seen_head);
    // Near genesis heights never drop below 1.
    let mut p = Picker::new(Mix::Explorer, Form::Get, 3);
    for _ in 0..500 {
        let Call::Get(path) = p.next(3) else { panic!() };
        assert!(!path.contains("height=0"), "{path}");
    }
}

#[test]
fn get_form_quotes_and_encodes_strings() {
    let c = render(
        Form::Get,
        1,
        "tx_search",
        &[
            ("query", Arg::Str("tx.height=5")),
            ("per_page", Arg::Int(100)),
        ],
    );
    assert_eq!(
        c,
        Call::Get("/tx_search?query=%22tx.height%3D5%22&per_page=100".into())
    );
    assert_eq!(
        render(Form::Get, 1, "status", &[]),
        Call::Get("/status".into())
    );
}

#[test]
fn miss_overhead_calls_are_unique_and_cache_hit_calls_identical() {
    let mut p = Picker::new(Mix::MissOverhead, Form::Post, 4);
    let (a, b) = (p.next(10), p.next(10));
    assert_ne!(a, b);
    let mut p = Picker::new(Mix::CacheHit, Form::Post, 4);
    assert_eq!(p.next(10), p.next(99));
}

#[test]
fn the_light_mix_has_no_heavy_call() {
    let mut p = Picker::new(Mix::Light, Form::Post, 5);
    assert!((0..1000).all(|_| !is_heavy(&p.next(300))));
}

#[test]
fn heavy_calls_are_told_apart_in_both_forms() {
    let heavy = render(Form::Post, 1, "tx_search", &[("query", Arg::Str("a"))]);
    assert!(is_heavy(&heavy));
    assert!(is_heavy(&render(Form::Get, 1, "block_results", &[])));
    assert!(!is_heavy(&render(Form::Post, 1, "block", &[])));
    assert!(!is_heavy(&render(Form::Get, 1, "status", &[])));
}

#[test]
fn reads_the_head_from_a_status_answer() {
    let body = br#"{"jsonrpc":"2.0","id":-1,"result":{"sync_info":{"latest_block_height":"42"}}}"#;
    assert_eq!(head_from_status(body), Some(42));
    assert_eq!(head_from_status(b"{}"), None);
}
