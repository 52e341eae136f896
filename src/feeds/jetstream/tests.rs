//! The Jetstream protocol's tests: frames, cursors, replays after a rewind.

use super::*;
use crate::store::MemoryStore;
use serde_json::json;

const DID: &str = "did:plc:abc123";

fn proto(rewind: u64) -> Jetstream {
    let cfg = FeedConfig {
        name: "js".into(),
        url: "ws://h/subscribe".into(),
        rewind_secs: Some(rewind),
        ..FeedConfig::default()
    };
    Jetstream::new(&cfg, Arc::new(MemoryStore::default()))
}

fn commit(op: &str, rkey: &str, time_us: i64, record: Option<Value>) -> String {
    let mut c = json!({"rev": format!("rev{time_us}"), "operation": op,
        "collection": POST, "rkey": rkey, "cid": "bafy"});
    if let Some(r) = record {
        c["record"] = r;
    }
    json!({"did": DID, "time_us": time_us, "kind": "commit", "commit": c}).to_string()
}

fn post(text: &str) -> Value {
    json!({"$type": POST, "createdAt": "2024-09-09T19:46:02.102Z", "langs": ["zh", "en"],
        "text": text})
}

/// Deliver one frame as the connection loop does.
async fn feed(p: &mut Jetstream, text: &str) -> Frame {
    let f = p.on_text(text);
    p.delivered(&f).await;
    f
}

#[tokio::test]
async fn frames_are_mapped() {
    let t = 1_725_911_162_329_308_i64;
    let uri = format!("at://{DID}/{POST}/3l3qo2vutsw2b");
    let mut reply = post("回复");
    reply["reply"] = json!({"parent": {"cid": "c1", "uri": "at://did:plc:p/app.bsky.feed.post/parent"},
        "root": {"cid": "c0", "uri": "at://did:plc:r/app.bsky.feed.post/root"}});
    let mut no_time = post("x");
    no_time["createdAt"] = json!("yesterday");
    let repost = json!({"did": DID, "time_us": t, "kind": "commit", "commit": {
        "rev": "r", "operation": "create", "collection": REPOST, "rkey": "rp",
        "record": {"$type": REPOST, "createdAt": "2024-09-09T19:46:02.102Z",
            "subject": {"cid": "c", "uri": "at://did:plc:o/app.bsky.feed.post/orig"}}}})
    .to_string();
    // (frame, kind, rejects, mention id, text, reply_to, repost_of, ts, deleted)
    type Row<'a> = (
        String,
        &'a str,
        &'a [&'a str],
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        i64,
        &'a [&'a str],
    );
    let deleted_uri = [uri.as_str()];
    let rows: Vec<Row> = vec![
        (
            commit("create", "3l3qo2vutsw2b", t, Some(post("海淀区暴雨"))),
            "commit",
            &[],
            Some(uri.as_str()),
            "海淀区暴雨",
            None,
            None,
            1_725_911_162_102,
            &[],
        ),
        (
            commit("update", "3l3qo2vutsw2b", t + 1, Some(post("改了"))),
            "commit",
            &[],
            Some(uri.as_str()),
            "改了",
            None,
            None,
            1_725_911_162_102,
            &[],
        ),
        (
            commit("create", "r1", t + 2, Some(reply)),
            "commit",
            &[],
            Some("at://did:plc:abc123/app.bsky.feed.post/r1"),
            "回复",
            Some("at://did:plc:p/app.bsky.feed.post/parent"),
            None,
            1_725_911_162_102,
            &[],
        ),
        (
            commit("create", "nt", t + 3, Some(no_time)),
            "commit",
            &[],
            Some("at://did:plc:abc123/app.bsky.feed.post/nt"),
            "x",
            None,
            None,
            (t + 3) / 1000,
            &[],
        ),
        (
            repost,
            "commit",
            &[],
            Some("at://did:plc:abc123/app.bsky.feed.repost/rp"),
            "",
            None,
            Some("at://did:plc:o/app.bsky.feed.post/orig"),
            1_725_911_162_102,
            &[],
        ),
        (
            commit("delete", "3l3qo2vutsw2b", t + 4, None),
            "delete",
            &[],
            None,
            "",
            None,
            None,
            0,
            &deleted_uri,
        ),
        (
            json!({"did": DID, "time_us": t, "kind": "identity",
                "identity": {"did": DID, "handle": "a.bsky.social", "seq": 1}})
            .to_string(),
            "identity",
            &[],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            json!({"did": DID, "time_us": t, "kind": "account",
                "account": {"active": true, "did": DID, "seq": 2}})
            .to_string(),
            "account",
            &[],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            json!({"did": DID, "time_us": t, "kind": "labels"}).to_string(),
            "unknown",
            &[],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            "not json".into(),
            "malformed",
            &["invalid_json"],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            "[1,2]".into(),
            "malformed",
            &["invalid_json"],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            commit("create", "nr", t, None),
            "malformed",
            &["bad_field"],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            commit(
                "create",
                "nx",
                t,
                Some(json!({"createdAt": "2024-09-09T19:46:02Z"})),
            ),
            "malformed",
            &["bad_field"],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            commit("explode", "ex", t, Some(post("x"))),
            "malformed",
            &["bad_field"],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
        (
            json!({"time_us": t, "kind": "commit", "commit": {"operation": "create",
                "collection": POST, "rkey": "k", "record": post("x")}})
            .to_string(),
            "malformed",
            &["bad_field"],
            None,
            "",
            None,
            None,
            0,
            &[],
        ),
    ];
    for (text, kind, rejects, id, body, reply_to, repost_of, ts, deleted) in rows {
        let f = feed(&mut proto(5), &text).await;
        assert_eq!(f.kind, kind, "{text}");
        assert_eq!(f.rejects, rejects, "{text}");
        assert_eq!(f.deleted, deleted, "{text}");
        if kind != "malformed" || text.contains("time_us") {
            assert_eq!(f.event_ms, Some(t / 1000), "{text}");
        }
        match id {
            None => assert!(f.mentions.is_empty(), "{text}: {:?}", f.mentions),
            Some(id) => {
                assert_eq!(f.mentions.len(), 1, "{text}");
                let m = &f.mentions[0];
                assert_eq!(m.id, id, "{text}");
                assert_eq!(m.text, body, "{text}");
                assert_eq!(m.reply_to.as_deref(), reply_to, "{text}");
                assert_eq!(m.repost_of.as_deref(), repost_of, "{text}");
                assert_eq!(m.ts, ts, "{text}");
                assert_eq!(m.author.as_ref().map(|a| a.id.as_str()), Some(DID));
                let lang = repost_of.is_none().then_some("zh");
                assert_eq!(m.lang.as_deref(), lang, "{text}");
                assert_eq!(m.source.as_deref(), Some(SOURCE));
            }
        }
    }
}

#[tokio::test]
async fn urls_with_and_without_cursor() {
    let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        build_url("ws://h/subscribe", &cols(&[POST]), None),
        "ws://h/subscribe?wantedCollections=app.bsky.feed.post"
    );
    assert_eq!(
        build_url("wss://h/subscribe", &cols(&[POST, REPOST]), Some(17)),
        "wss://h/subscribe?wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.feed.repost&cursor=17"
    );
    assert_eq!(
        build_url(
            "ws://h/subscribe?maxMessageSizeBytes=9",
            &cols(&["a b"]),
            None
        ),
        "ws://h/subscribe?maxMessageSizeBytes=9&wantedCollections=a%20b"
    );

    // The protocol: default collection, no cursor until one is known, then the newest
    // delivered time minus the rewind.
    let mut p = proto(5);
    assert_eq!(
        p.url(),
        "ws://h/subscribe?wantedCollections=app.bsky.feed.post"
    );
    p.resume(Some(100_000_000), None);
    assert!(p.url().ends_with("&cursor=95000000"), "{}", p.url());
    feed(&mut p, &commit("create", "a", 200_000_000, Some(post("x")))).await;
    assert!(p.url().ends_with("&cursor=195000000"), "{}", p.url());
    // An older event does not move the cursor back; an event-less frame does not move it.
    feed(&mut p, &commit("create", "b", 150_000_000, Some(post("x")))).await;
    feed(&mut p, "garbage").await;
    assert_eq!(p.cursor(), Some(200_000_000));
    // An unusable commit is still behind us once delivered.
    feed(&mut p, &commit("create", "c", 300_000_000, None)).await;
    assert_eq!(p.cursor(), Some(300_000_000));
}

#[tokio::test]
async fn replays_are_suppressed_across_reconnects_and_restarts() {
    let mut a = proto(5);
    let frames: Vec<String> = (1..=5)
        .map(|i| commit("create", &format!("k{i}"), i * 1_000_000, Some(post("x"))))
        .collect();
    for f in &frames {
        assert_eq!(feed(&mut a, f).await.mentions.len(), 1);
    }
    // Reconnect: the rewound replay delivers nothing twice.
    for f in &frames {
        assert!(feed(&mut a, f).await.mentions.is_empty());
    }
    assert_eq!(a.replayed(), 5);
    // A delete of a delivered post is another event.
    assert_eq!(
        feed(&mut a, &commit("delete", "k5", 6_000_000, None))
            .await
            .deleted
            .len(),
        1
    );

    // Restart from the persisted cursor and state.
    let mut b = proto(5);
    b.resume(a.cursor(), Some(&a.state()));
    assert!(b.url().ends_with("&cursor=1000000"), "{}", b.url());
    for f in &frames[1..] {
        assert!(feed(&mut b, f).await.mentions.is_empty(), "{f}");
    }
    let new = commit("create", "k7", 7_000_000, Some(post("x")));
    assert_eq!(feed(&mut b, &new).await.mentions.len(), 1);
    // Garbage state is ignored.
    let mut c = proto(5);
    c.resume(Some(1), Some(b"\x09junk"));
    assert_eq!(feed(&mut c, &frames[0]).await.mentions.len(), 1);
}

#[tokio::test]
async fn old_events_are_forgotten() {
    let mut p = proto(1);
    feed(&mut p, &commit("create", "old", 1_000_000, Some(post("x")))).await;
    feed(
        &mut p,
        &commit("create", "new", 10_000_000, Some(post("x"))),
    )
    .await;
    assert_eq!(p.lock().recent.order.len(), 1);
}
