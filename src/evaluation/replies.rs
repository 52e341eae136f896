//! 认同度 from replies: a reply (or comment) to one of an account's own posts — a mention whose
//! `reply_to` names a post its timeline showed ([`super::timeline`]) — is read for approval with
//! the same cues as a requester's rating (满意/谢谢/点赞 …, 不满意/敷衍/没用 …, English too) and
//! kept in the case store (`account_replies`, one record per reply), so the share of positive
//! replies among those that say either way joins the satisfaction rate in the approval score.

use crate::cases::model::{read_satisfaction, Satisfaction};
use crate::cases::store::{CaseStore, Table};
use crate::normalize::Mention;
use crate::respond::replies::Target;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One reply to an account's post, with what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The account replied to.
    pub account: String,
    /// Its post.
    pub post: String,
    /// The reply's mention id.
    pub mention: String,
    /// When (event time, ms).
    pub at: i64,
    /// `positive`, `negative` or `neutral`.
    pub verdict: String,
}

/// The reply `m` makes to one of the posts in `posts` (native post id → account), if it does.
pub fn read(m: &Mention, posts: &HashMap<String, String>) -> Option<Reply> {
    // The platform's own id of the post replied to (a Weibo comment id is not a post).
    let target = Target::from_id(m.reply_to.as_deref()?, m.source.as_deref())?;
    let post = target.native_id();
    let account = posts.get(post)?;
    let verdict = match read_satisfaction(&m.text) {
        Some(Satisfaction::Satisfied) => "positive",
        Some(Satisfaction::Dissatisfied) => "negative",
        None => "neutral",
    };
    Some(Reply {
        account: account.clone(),
        post: post.to_string(),
        mention: m.id.clone(),
        at: m.ts,
        verdict: verdict.into(),
    })
}

/// The accounts' posts by native id, from the timeline records in `store`.
pub fn post_index(store: &CaseStore) -> Result<HashMap<String, String>, String> {
    Ok(super::timeline::load(store)?
        .into_iter()
        .map(|p| (p.id, p.account))
        .collect())
}

/// Keep `r` (the same reply twice is one record).
pub fn keep(store: &CaseStore, r: &Reply) -> Result<(), String> {
    let v = serde_json::to_vec(r).map_err(|e| e.to_string())?;
    store
        .put_records(Table::AccountReplies, &[(r.mention.clone(), v)])
        .map_err(|e| e.to_string())
}

/// Every reply record in `store`.
pub fn load(store: &CaseStore) -> Result<Vec<Reply>, String> {
    Ok(store
        .records(Table::AccountReplies)
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|r| serde_json::from_slice(r).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str, to: &str) -> Mention {
        Mention {
            reply_to: Some(to.into()),
            ..Mention::new(format!("m-{text}"), 1, text)
        }
    }

    #[test]
    fn replies_to_an_accounts_posts_are_read_for_approval() {
        let posts = HashMap::from([("77".to_string(), "bj".to_string())]);
        let v = |text: &str, to: &str| read(&reply(text, to), &posts).map(|r| r.verdict);
        assert_eq!(
            v("点赞，处置及时", "mastodon:gov.example:77").as_deref(),
            Some("positive")
        );
        assert_eq!(v("太敷衍了", "weibo:77").as_deref(), Some("negative"));
        assert_eq!(v("几点开始？", "weibo:77").as_deref(), Some("neutral"));
        // Not one of its posts, or a comment id: nothing.
        assert_eq!(v("谢谢", "weibo:78"), None);
        assert_eq!(v("谢谢", "weibo:c:77"), None);
    }
}
