//! Publisher tests against the fake platform (`tests/fake_platform`): the documented request
//! shapes, idempotency, limits, error classification, and the resolution of uncertain outcomes
//! with `find_recent`. Every wait is an HTTP call bounded by the client's timeout.

use crate::fake_platform::{FakeHandle, FakePlatform};
use crate::util::serve;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use huiying::respond::publish::webhook::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use huiying::respond::publish::{
    http_client, Action, AnyPublisher, ErrorKind, FilePublisher, MastodonPublisher, PostRequest,
    PublishError, Publisher, WebhookPublisher, WeiboPublisher,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLOOD: &str = "【暴雨红色预警】海淀区未来3小时降雨量将达100毫米以上，请避免外出。\n详情 https://gov.example/n/1";

fn client() -> reqwest::Client {
    http_client(Duration::from_secs(5)).expect("http client")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn req(key: &str, account: &str, text: &str, action: Action) -> PostRequest {
    PostRequest {
        idempotency_key: key.to_string(),
        account_handle: account.to_string(),
        text: text.to_string(),
        action,
        language: None,
        visibility: None,
    }
}

async fn fake() -> FakeHandle {
    let (_, handle) = FakePlatform::start().await;
    handle
}

fn mastodon(f: &FakeHandle, token: &str) -> MastodonPublisher {
    MastodonPublisher::new(client(), &f.base_url(), token)
}

fn weibo(f: &FakeHandle, token: &str) -> WeiboPublisher {
    WeiboPublisher::new(client(), &f.base_url(), token)
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, PublishError>) -> PublishError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Mastodon

#[tokio::test]
async fn mastodon_post_reblog_and_reply_are_recorded() {
    let f = fake().await;
    f.add_account("tok-lead", "bjfabu");
    f.add_account("tok-amp", "haidian");
    f.set_limit("tok-lead", 10, Duration::from_secs(300));
    let lead = mastodon(&f, "tok-lead");
    let amp = mastodon(&f, "tok-amp");
    let before = now_ms();

    let mut post = req("n1:bjfabu:post", "bjfabu", FLOOD, Action::Post);
    post.language = Some("zh".into());
    post.visibility = Some("public".into());
    let p = lead.publish(&post).await.expect("post");
    assert!(p.post_id.chars().all(|c| c.is_ascii_digit()), "{p:?}");
    let url = p.url.clone().expect("a status URL");
    assert!(url.ends_with(&format!("/@bjfabu/{}", p.post_id)), "{url}");
    assert_eq!(p.rate_remaining, Some(9));
    let reset = p.rate_reset_at.expect("X-RateLimit-Reset parsed");
    assert!(
        reset >= before + 299_000 && reset <= now_ms() + 300_000,
        "{reset}"
    );

    let target = p.post_id.clone();
    let rb = amp
        .publish(&req(
            "n1:haidian:repost",
            "haidian",
            "",
            Action::Repost {
                target: target.clone(),
            },
        ))
        .await
        .expect("reblog");
    let reply = amp
        .publish(&req(
            "n1:haidian:reply",
            "haidian",
            "海淀区已启动防汛应急响应。",
            Action::Reply {
                target: target.clone(),
            },
        ))
        .await
        .expect("reply");
    assert!(rb.post_id != p.post_id && reply.post_id != rb.post_id);

    let posts = f.posts();
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert_eq!(
        (
            posts[0].platform,
            posts[0].account.as_str(),
            posts[0].action
        ),
        ("mastodon", "bjfabu", "post")
    );
    assert_eq!(posts[0].text, FLOOD);
    assert_eq!(posts[0].language.as_deref(), Some("zh"));
    assert_eq!(posts[0].visibility.as_deref(), Some("public"));
    assert_eq!(posts[0].idempotency_key.as_deref(), Some("n1:bjfabu:post"));
    assert_eq!(
        (posts[1].action, posts[1].target.as_deref()),
        ("repost", Some(target.as_str()))
    );
    assert_eq!(posts[1].id, rb.post_id);
    assert_eq!(
        (posts[2].action, posts[2].target.as_deref()),
        ("reply", Some(target.as_str()))
    );
    assert_eq!(posts[2].text, "海淀区已启动防汛应急响应。");

    // A second reblog of the same status is the first one (Mastodon's rule), not a new post.
    let again = amp
        .publish(&req(
            "n1:haidian:repost:2",
            "haidian",
            "",
            Action::Repost { target },
        ))
        .await
        .expect("reblog again");
    assert_eq!(again.post_id, rb.post_id);
    assert_eq!(f.posts().len(), 3);
    assert_eq!(f.violations(), 0);
}

#[tokio::test]
async fn mastodon_same_idempotency_key_posts_once() {
    let f = fake().await;
    f.add_account("tok", "bjfabu");
    let p = mastodon(&f, "tok");
    let r = req("n2:bjfabu:post", "bjfabu", FLOOD, Action::Post);
    let first = p.publish(&r).await.expect("first");
    let second = p.publish(&r).await.expect("second");
    assert_eq!(first.post_id, second.post_id);
    assert_eq!(f.posts().len(), 1);
    // Another key is another post.
    let other = p
        .publish(&req("n3:bjfabu:post", "bjfabu", "另一条通知", Action::Post))
        .await
        .expect("other");
    assert_ne!(other.post_id, first.post_id);
    assert_eq!(f.posts().len(), 2);
}

#[tokio::test]
async fn mastodon_429_is_rate_limited_with_retry_after_from_the_reset_header() {
    let f = fake().await;
    f.add_account("tok", "bjfabu");
    f.set_limit("tok", 1, Duration::from_secs(60));
    let p = mastodon(&f, "tok");
    let ok = p
        .publish(&req("k1", "bjfabu", "第一条", Action::Post))
        .await
        .expect("within the limit");
    assert_eq!(ok.rate_remaining, Some(0));
    let e = expect_err(
        p.publish(&req("k2", "bjfabu", "第二条", Action::Post))
            .await,
    );
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.retryable && !e.must_check_before_retry());
    assert_eq!(e.status, Some(429));
    assert_eq!(e.message, "Too many requests");
    let after = e.retry_after.expect("retry_after from X-RateLimit-Reset");
    assert!(
        after <= Duration::from_secs(60) && after >= Duration::from_secs(50),
        "{after:?}"
    );
    assert_eq!(f.violations(), 1);
    assert_eq!(f.violations_for("tok"), 1);
    assert_eq!(f.posts().len(), 1);
}

#[tokio::test]
async fn mastodon_5xx_is_a_retryable_server_error() {
    let f = fake().await;
    f.add_account("tok", "bjfabu");
    let p = mastodon(&f, "tok");
    let r = req("k1", "bjfabu", FLOOD, Action::Post);
    f.fail_next(1, 503);
    let e = expect_err(p.publish(&r).await);
    assert_eq!(
        (e.kind, e.retryable, e.status),
        (ErrorKind::Server, true, Some(503))
    );
    assert!(
        e.message.contains("503 Service Unavailable"),
        "{}",
        e.message
    );
    f.fail_next(1, 500);
    let e = expect_err(p.publish(&r).await);
    assert_eq!(
        (e.kind, e.retryable, e.status),
        (ErrorKind::Server, true, Some(500))
    );
    assert!(f.posts().is_empty());
    // The retry with the same key goes through once.
    p.publish(&r).await.expect("retry");
    assert_eq!(f.posts().len(), 1);
}

#[tokio::test]
async fn mastodon_401_is_a_permanent_auth_error_with_the_platform_message() {
    let f = fake().await;
    f.add_account("tok", "bjfabu");
    let p = mastodon(&f, "revoked-token");
    let e = expect_err(p.publish(&req("k1", "bjfabu", FLOOD, Action::Post)).await);
    assert_eq!(
        (e.kind, e.retryable, e.status),
        (ErrorKind::Auth, false, Some(401))
    );
    assert_eq!(e.message, "The access token is invalid");
    assert!(f.posts().is_empty());
}

#[tokio::test]
async fn mastodon_422_and_404_are_rejected_with_the_platform_message() {
    let f = fake().await;
    f.add_account("tok", "bjfabu");
    let p = mastodon(&f, "tok");
    let e = expect_err(p.publish(&req("k1", "bjfabu", "  ", Action::Post)).await);
    assert_eq!(
        (e.kind, e.retryable, e.status),
        (ErrorKind::Rejected, false, Some(422))
    );
    assert_eq!(e.message, "Validation failed: Text can't be blank");
    let e = expect_err(
        p.publish(&req(
            "k2",
            "bjfabu",
            "回复",
            Action::Reply {
                target: "999".into(),
            },
        ))
        .await,
    );
    assert_eq!((e.kind, e.status), (ErrorKind::Rejected, Some(404)));
    assert!(
        e.message.contains("does not appear to exist"),
        "{}",
        e.message
    );
    // A target id that cannot be a path segment never leaves the process.
    let e = expect_err(
        p.publish(&req(
            "k3",
            "bjfabu",
            "",
            Action::Repost {
                target: "../../admin".into(),
            },
        ))
        .await,
    );
    assert_eq!((e.kind, e.status), (ErrorKind::Rejected, None));
    assert!(f.posts().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Weibo

#[tokio::test]
async fn weibo_share_repost_and_comment_succeed() {
    let f = fake().await;
    f.add_account("wb-lead", "北京发布");
    f.add_account("wb-amp", "海淀发布");
    let lead = weibo(&f, "wb-lead");
    let amp = weibo(&f, "wb-amp");
    let p = lead
        .publish(&req("n1:lead:post", "北京发布", FLOOD, Action::Post))
        .await
        .expect("share");
    assert_eq!(p.post_id.len(), 16, "{p:?}");
    let target = p.post_id.clone();
    let rp = amp
        .publish(&req(
            "n1:amp:repost",
            "海淀发布",
            "请海淀区居民注意防范",
            Action::Repost {
                target: target.clone(),
            },
        ))
        .await
        .expect("repost");
    let cm = amp
        .publish(&req(
            "n1:amp:comment",
            "海淀发布",
            "海淀区应急避难场所已开放。",
            Action::Comment {
                target: target.clone(),
            },
        ))
        .await
        .expect("comment");
    let posts = f.posts();
    assert_eq!(posts.len(), 3);
    assert_eq!(
        posts
            .iter()
            .map(|p| (
                p.platform,
                p.account.as_str(),
                p.action,
                p.target.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("weibo", "北京发布", "post", None),
            ("weibo", "海淀发布", "repost", Some(target.as_str())),
            ("weibo", "海淀发布", "comment", Some(target.as_str())),
        ]
    );
    assert_eq!(posts[0].text, FLOOD);
    assert_eq!(
        (posts[1].id.as_str(), posts[2].id.as_str()),
        (rp.post_id.as_str(), cm.post_id.as_str())
    );
    // The comment is found among the account's comments, the repost in its timeline, each only
    // as an answer to its target: not as a top-level post, not as an answer to another post.
    let since = posts[0].at_ms;
    let t = Some(target.as_str());
    let found = amp
        .find_recent("海淀区应急避难场所已开放。", t, since)
        .await
        .expect("find");
    assert_eq!(found.map(|p| p.post_id), Some(cm.post_id));
    let found = amp
        .find_recent("请海淀区居民注意防范", t, since)
        .await
        .expect("find");
    assert_eq!(found.map(|p| p.post_id), Some(rp.post_id));
    for (text, to) in [
        ("海淀区应急避难场所已开放。", None),
        ("海淀区应急避难场所已开放。", Some("999")),
        ("请海淀区居民注意防范", None),
    ] {
        let found = amp.find_recent(text, to, since).await.expect("find");
        assert_eq!(found, None, "{text} answering {to:?}");
    }
}

/// A citizen's comment is answered under itself (`comments/reply` with the weibo and the
/// comment): the platform refuses a comment that is not on that weibo, and an uncertain answer is
/// found again among the account's comments as a reply to that comment only.
#[tokio::test]
async fn weibo_answers_a_comment_with_comments_reply() {
    let f = fake().await;
    f.add_account("wb-gov", "问政银川");
    f.add_account("wb-citizen", "银川市民");
    let gov = weibo(&f, "wb-gov");
    let citizen = weibo(&f, "wb-citizen");
    let status = gov
        .publish(&req(
            "n2:post",
            "问政银川",
            "欢迎留言反映问题。",
            Action::Post,
        ))
        .await
        .expect("share")
        .post_id;
    let mut comments = Vec::new();
    for (i, text) in ["金凤区路灯不亮了，请尽快修", "兴庆区丽景街积水"]
        .iter()
        .enumerate()
    {
        let c = citizen
            .publish(&req(
                &format!("c{i}"),
                "银川市民",
                text,
                Action::Comment {
                    target: status.clone(),
                },
            ))
            .await
            .expect("citizen's comment");
        comments.push(c.post_id);
    }
    let target = format!("{status}/{}", comments[1]);
    let answer = gov
        .publish(&req(
            "case:1:ack",
            "问政银川",
            "您好，您的诉求已收到并受理。",
            Action::Comment {
                target: target.clone(),
            },
        ))
        .await
        .expect("reply");
    let posts = f.posts();
    let last = posts.last().expect("posts");
    assert_eq!(
        (last.action, last.target.as_deref(), last.id.as_str()),
        ("comment", Some(target.as_str()), answer.post_id.as_str())
    );
    // Found again as the answer to that comment, not to the other one.
    let since = posts[0].at_ms;
    let found = gov
        .find_recent("您好，您的诉求已收到并受理。", Some(&target), since)
        .await
        .expect("find");
    assert_eq!(found.map(|p| p.post_id), Some(answer.post_id));
    let other = format!("{status}/{}", comments[0]);
    let found = gov
        .find_recent("您好，您的诉求已收到并受理。", Some(&other), since)
        .await
        .expect("find");
    assert_eq!(found, None);
    // A comment that is not on that weibo, and a malformed target, are refused.
    let e = expect_err(
        gov.publish(&req(
            "case:2:ack",
            "问政银川",
            "已收到。",
            Action::Comment {
                target: format!("{}/{}", comments[0], comments[1]),
            },
        ))
        .await,
    );
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    for bad in ["1/", "/2", "1/2/3", "1/../x"] {
        let e = expect_err(
            gov.publish(&req(
                "case:3:ack",
                "问政银川",
                "已收到。",
                Action::Comment { target: bad.into() },
            ))
            .await,
        );
        assert_eq!(e.kind, ErrorKind::Rejected, "{bad}: {e}");
    }
}

#[tokio::test]
async fn weibo_10023_is_rate_limited_until_the_next_hour() {
    let f = fake().await;
    f.add_account("wb", "北京发布");
    f.set_limit("wb", 1, Duration::from_secs(3600));
    let p = weibo(&f, "wb");
    p.publish(&req("k1", "北京发布", "第一条", Action::Post))
        .await
        .expect("within the limit");
    let e = expect_err(
        p.publish(&req("k2", "北京发布", "第二条", Action::Post))
            .await,
    );
    assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
    assert!(e.retryable);
    // Weibo answers 403; the error code, not the status, made it a rate limit.
    assert_eq!(e.status, Some(403));
    assert!(
        e.message.contains("out of rate limit") && e.message.contains("10023"),
        "{}",
        e.message
    );
    let after = e.retry_after.expect("the top of the next hour");
    assert!(
        after > Duration::ZERO && after <= Duration::from_secs(3600),
        "{after:?}"
    );
    assert_eq!(f.violations(), 1);
    assert_eq!(f.posts().len(), 1);
}

#[tokio::test]
async fn weibo_identical_consecutive_text_is_a_duplicate_resolved_by_find_recent() {
    let f = fake().await;
    f.add_account("wb", "北京发布");
    let p = weibo(&f, "wb");
    let since = now_ms();
    let first = p
        .publish(&req("n1:bj:post", "北京发布", FLOOD, Action::Post))
        .await
        .expect("first");
    // A retry that resent the unchanged body (another key: Weibo has none anyway).
    let e = expect_err(
        p.publish(&req("n1:bj:post#2", "北京发布", FLOOD, Action::Post))
            .await,
    );
    assert_eq!(e.kind, ErrorKind::Duplicate);
    assert!(!e.retryable && e.must_check_before_retry());
    assert!(e.message.contains("repeat content!"), "{}", e.message);
    // The dispatcher checks: the post is there, so the job is done with the first id.
    let found = p
        .find_recent(FLOOD, None, since)
        .await
        .expect("find_recent");
    assert_eq!(found.map(|p| p.post_id), Some(first.post_id));
    assert_eq!(f.posts().len(), 1);
}

#[tokio::test]
async fn weibo_invalid_token_is_auth() {
    let f = fake().await;
    let p = weibo(&f, "expired");
    let e = expect_err(p.publish(&req("k", "北京发布", FLOOD, Action::Post)).await);
    assert_eq!((e.kind, e.retryable), (ErrorKind::Auth, false));
    assert!(e.message.contains("invalid_access_token"), "{}", e.message);
    let e = expect_err(p.find_recent(FLOOD, None, 0).await);
    assert_eq!(e.kind, ErrorKind::Auth);
}

// ---------------------------------------------------------------------------------------------
// Uncertain outcomes

#[tokio::test]
async fn dropped_after_accept_is_uncertain_and_find_recent_finds_the_post() {
    let f = fake().await;
    f.add_account("m", "bjfabu");
    f.add_account("w", "北京发布");
    let publishers: Vec<AnyPublisher> = vec![mastodon(&f, "m").into(), weibo(&f, "w").into()];
    for (i, p) in publishers.iter().enumerate() {
        let since = now_ms();
        f.drop_after_accept_next(1);
        let e = expect_err(
            p.publish(&req(&format!("n9:{i}"), "acct", FLOOD, Action::Post))
                .await,
        );
        assert_eq!(e.kind, ErrorKind::Uncertain, "{}: {e}", p.platform());
        assert!(e.message.contains("connection closed"), "{}", e.message);
        assert!(e.retryable && e.must_check_before_retry());
        // The platform did accept it …
        let posts = f.posts();
        assert_eq!(posts.len(), i + 1);
        // … and the check finds it, so a dispatcher marks it done instead of posting again.
        let found = p
            .find_recent(FLOOD, None, since)
            .await
            .expect("find_recent")
            .expect("the accepted post");
        assert_eq!(found.post_id, posts[i].id, "{}", p.platform());
        // Another text is not there: that one would be resent.
        assert_eq!(
            p.find_recent("另一条", None, since).await.expect("find"),
            None
        );
    }
    assert_eq!(f.posts().len(), 2);
}

#[tokio::test]
async fn timeout_after_send_is_uncertain_and_find_recent_finds_the_post() {
    let f = fake().await;
    f.add_account("m", "bjfabu");
    let quick = MastodonPublisher::new(
        http_client(Duration::from_millis(300)).expect("client"),
        &f.base_url(),
        "m",
    );
    let since = now_ms();
    f.delay_next(1, Duration::from_secs(5));
    let started = std::time::Instant::now();
    let e = expect_err(
        quick
            .publish(&req("k", "bjfabu", FLOOD, Action::Post))
            .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the client timeout bounds it"
    );
    assert_eq!(e.kind, ErrorKind::Uncertain, "{e}");
    assert!(e.message.contains("timed out"), "{}", e.message);
    let found = mastodon(&f, "m")
        .find_recent(FLOOD, None, since)
        .await
        .expect("find_recent");
    assert_eq!(found.map(|p| p.post_id), Some(f.posts()[0].id.clone()));
    // Posts older than `since` (beyond the skew slack) are not matched.
    let later = now_ms() + 10 * 60_000;
    assert_eq!(
        mastodon(&f, "m")
            .find_recent(FLOOD, None, later)
            .await
            .expect("find"),
        None
    );
}

#[tokio::test]
async fn connection_refused_is_a_retryable_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let p = MastodonPublisher::new(client(), &format!("http://{addr}"), "tok");
    let e = expect_err(p.publish(&req("k", "bjfabu", FLOOD, Action::Post)).await);
    assert_eq!((e.kind, e.retryable), (ErrorKind::Network, true), "{e}");
    assert!(!e.must_check_before_retry());
}

/// A platform that answers every POST with `status` and `body`.
async fn answering(status: StatusCode, body: String) -> String {
    serve(Router::new().fallback(post(move || {
        let body = body.clone();
        async move { (status, [("content-type", "application/json")], body) }
    })))
    .await
}

/// A long error text from the platform is cut to a few hundred characters (at a character
/// boundary) before it can reach `last_error`, the audit log or the wall; of a 10 MiB error
/// answer only the first 64 KiB are read.
#[tokio::test]
async fn huge_platform_error_text_is_truncated() {
    let text = "限流".repeat(5_000);
    let base = answering(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "error": text }).to_string(),
    )
    .await;
    let p = MastodonPublisher::new(client(), &base, "tok");
    let e = expect_err(p.publish(&req("k", "bjfabu", FLOOD, Action::Post)).await);
    assert_eq!((e.kind, e.status), (ErrorKind::Rejected, Some(422)), "{e}");
    let chars = e.message.chars().count();
    assert!(chars <= 301, "{chars} characters kept");
    assert!(e.message.starts_with("限流限流") && e.message.ends_with('…'));
    // An error answer announced as 10 MiB, of which 128 KiB come and then nothing: the first
    // 64 KiB are all that is read (reading it whole would wait for the client's timeout and
    // lose the text).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (done, hold) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let _ = s.read(&mut [0u8; 8192]).await;
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n",
            10 << 20
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all("x".repeat(128 << 10).as_bytes()).await;
        let _ = hold.await;
    });
    let w = WeiboPublisher::new(client(), &format!("http://{addr}"), "tok");
    let e = expect_err(w.publish(&req("k", "bjfabu", FLOOD, Action::Post)).await);
    drop(done);
    assert_eq!(e.status, Some(400), "{e}");
    assert!(
        e.message.starts_with("xxxx") && e.message.ends_with('…'),
        "{e}"
    );
    assert!(e.to_string().chars().count() < 500, "{}", e.message.len());
}

/// A 10 MiB answer to a post is not read whole: after 64 KiB the outcome is uncertain (the
/// platform acted; `find_recent` will tell).
#[tokio::test]
async fn huge_answer_to_a_post_is_not_read_and_is_uncertain() {
    let status = json!({
        "id": "1", "url": "https://m.example/@b/1", "content": "x".repeat(10 << 20),
        "created_at": "2026-01-01T00:00:00Z",
    });
    let base = answering(StatusCode::OK, status.to_string()).await;
    let p = MastodonPublisher::new(client(), &base, "tok");
    let e = expect_err(p.publish(&req("k", "bjfabu", FLOOD, Action::Post)).await);
    assert_eq!((e.kind, e.status), (ErrorKind::Uncertain, Some(200)), "{e}");
    assert!(e.must_check_before_retry());
    assert!(e.message.contains("answer over"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Webhook and file

#[derive(Clone, Default)]
struct Receiver {
    secret: Vec<u8>,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    ids: Arc<Mutex<HashMap<String, String>>>,
}

/// A receiver that checks the signature and de-duplicates by `Idempotency-Key`.
async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.seen
        .lock()
        .expect("lock")
        .push((headers.clone(), body.clone()));
    let now_s = now_ms() / 1000;
    if !webhook::verify_signature_at(
        &r.secret,
        &h(TIMESTAMP_HEADER),
        &body,
        &h(SIGNATURE_HEADER),
        now_s,
        Duration::from_secs(300),
    ) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad signature"})),
        )
            .into_response();
    }
    let mut ids = r.ids.lock().expect("lock");
    let n = ids.len() + 1;
    let id = ids
        .entry(h("idempotency-key"))
        .or_insert_with(|| format!("wh-{n}"))
        .clone();
    Json(json!({ "id": id })).into_response()
}

#[tokio::test]
async fn webhook_is_signed_verifiable_and_tampering_fails() {
    let receiver = Receiver {
        secret: b"hook-secret-1".to_vec(),
        ..Receiver::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let url = format!("{}/hook", serve(app).await);
    let p = WebhookPublisher::new(client(), url.clone(), b"hook-secret-1".to_vec());
    let mut r = req(
        "n1:ops:post",
        "ops-gateway",
        FLOOD,
        Action::Reply {
            target: "42".into(),
        },
    );
    r.language = Some("zh".into());
    let posted = p.publish(&r).await.expect("delivered");
    assert_eq!(posted.post_id, "wh-1");
    // Resent (an uncertain outcome): the receiver de-duplicates by key.
    assert_eq!(p.publish(&r).await.expect("again").post_id, "wh-1");
    assert_eq!(
        p.find_recent(FLOOD, None, 0).await.expect("no read API"),
        None
    );

    let (headers, body) = receiver.seen.lock().expect("lock")[0].clone();
    let v: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(
        v,
        json!({"idempotency_key": "n1:ops:post", "account": "ops-gateway", "text": FLOOD,
               "action": "reply", "target": "42", "language": "zh", "visibility": null})
    );
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .expect(k)
            .to_string()
    };
    assert_eq!(h("idempotency-key"), "n1:ops:post");
    let (ts, sig) = (h(TIMESTAMP_HEADER), h(SIGNATURE_HEADER));
    assert!(sig.starts_with("sha256="));
    assert!(webhook::verify_signature(
        b"hook-secret-1",
        &ts,
        &body,
        &sig
    ));
    let mut tampered = body.to_vec();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    assert!(!webhook::verify_signature(
        b"hook-secret-1",
        &ts,
        &tampered,
        &sig
    ));
    assert!(!webhook::verify_signature(
        b"other-secret",
        &ts,
        &body,
        &sig
    ));
    let other_ts = (ts.parse::<i64>().expect("ts") + 1).to_string();
    assert!(!webhook::verify_signature(
        b"hook-secret-1",
        &other_ts,
        &body,
        &sig
    ));

    // A wrong secret is refused by the receiver: a permanent auth failure with its message.
    let bad = WebhookPublisher::new(client(), url, b"wrong".to_vec());
    let e = expect_err(bad.publish(&r).await);
    assert_eq!(
        (e.kind, e.retryable, e.message.as_str()),
        (ErrorKind::Auth, false, "bad signature")
    );
}

#[tokio::test]
async fn file_sink_is_idempotent_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("drill.jsonl");
    let since = now_ms();
    let (id1, id2) = {
        let f = FilePublisher::open(&path).expect("open");
        let a = f
            .publish(&req("n1:a:post", "a", FLOOD, Action::Post))
            .await
            .expect("a");
        let b = f
            .publish(&req(
                "n1:b:repost",
                "b",
                "",
                Action::Repost {
                    target: a.post_id.clone(),
                },
            ))
            .await
            .expect("b");
        let again = f
            .publish(&req("n1:a:post", "a", FLOOD, Action::Post))
            .await
            .expect("a again");
        assert_eq!(again.post_id, a.post_id);
        assert_eq!(f.len(), 2);
        (a.post_id, b.post_id)
    };
    // A crash in the middle of a later write leaves a torn line.
    {
        use std::io::Write;
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open raw");
        raw.write_all(br#"{"post_id":"file-3","idempo"#)
            .expect("torn write");
    }
    let f = FilePublisher::open(&path).expect("reopen");
    assert_eq!(f.len(), 2);
    let a = f
        .publish(&req("n1:a:post", "a", FLOOD, Action::Post))
        .await
        .expect("a after reopen");
    assert_eq!(a.post_id, id1);
    let c = f
        .publish(&req("n2:a:post", "a", "解除预警", Action::Post))
        .await
        .expect("c");
    assert_eq!(c.post_id, "file-3");
    assert_ne!(c.post_id, id2);
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a record"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["action"], "repost");
    assert_eq!(lines[1]["target"], id1.as_str());
    let found = f.find_recent(FLOOD, None, since).await.expect("find");
    assert_eq!(found.map(|p| p.post_id), Some(id1));
    // A corrupt complete line is an error, not a silent skip.
    std::fs::write(&path, "not json\n").expect("write");
    assert!(FilePublisher::open(&path).is_err());
}

#[tokio::test]
async fn any_publisher_holds_every_platform_and_debug_hides_secrets() {
    let f = fake().await;
    f.add_account("m-secret-token", "bjfabu");
    f.add_account("w-secret-token", "北京发布");
    let dir = tempfile::tempdir().expect("tempdir");
    let all: Vec<AnyPublisher> = vec![
        mastodon(&f, "m-secret-token").into(),
        weibo(&f, "w-secret-token").into(),
        WebhookPublisher::new(
            client(),
            "https://hooks.example/T0/xyz-path-token",
            b"wh-secret-key".to_vec(),
        )
        .into(),
        FilePublisher::open(dir.path().join("d.jsonl"))
            .expect("file")
            .into(),
    ];
    assert_eq!(
        all.iter().map(|p| p.platform()).collect::<Vec<_>>(),
        ["mastodon", "weibo", "webhook", "file"]
    );
    let debug = format!("{all:?}");
    for secret in [
        "m-secret-token",
        "w-secret-token",
        "wh-secret-key",
        "xyz-path-token",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    for p in all.iter().filter(|p| p.platform() != "webhook") {
        p.publish(&req("n5", "acct", FLOOD, Action::Post))
            .await
            .expect("published");
    }
    assert_eq!(f.posts().len(), 2);
}

#[tokio::test]
async fn fake_fixed_window_limits_reset_at_the_window_boundary() {
    let f = fake().await;
    f.add_account("tok", "bjfabu");
    // Epoch-aligned windows: take a length whose boundary is not within 20 s of now, so the three
    // posts cannot straddle a reset (an hour, unless the test runs at the top of one).
    let window_ms = [3_600_000i64, 3_593_000, 3_581_000]
        .into_iter()
        .find(|w| {
            let pos = now_ms().rem_euclid(*w);
            pos > 20_000 && pos < w - 20_000
        })
        .expect("one of three window lengths is away from its boundary");
    f.set_limit_fixed("tok", 2, Duration::from_millis(window_ms as u64));
    let p = mastodon(&f, "tok");
    for (i, text) in ["一", "二"].iter().enumerate() {
        let ok = p
            .publish(&req(&format!("k{i}"), "bjfabu", text, Action::Post))
            .await
            .expect("within the limit");
        assert_eq!(ok.rate_remaining, Some(1 - i as u32));
    }
    let e = expect_err(p.publish(&req("k3", "bjfabu", "三", Action::Post)).await);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    // The reset is the start of the next window.
    let now = now_ms();
    let top = now - now.rem_euclid(window_ms) + window_ms;
    let after = e.retry_after.expect("retry_after").as_millis() as i64;
    assert!((now + after - top).abs() < 2_000, "{after} ms");
    // A Weibo reply is a comment on the target.
    f.add_account("wb", "北京发布");
    let w = weibo(&f, "wb");
    let post = w
        .publish(&req("w1", "北京发布", FLOOD, Action::Post))
        .await
        .expect("post");
    w.publish(&req(
        "w2",
        "北京发布",
        "已转发至各区。",
        Action::Reply {
            target: post.post_id,
        },
    ))
    .await
    .expect("reply");
    assert_eq!(f.posts().last().map(|p| p.action), Some("comment"));
}
