//! The weights of the evaluation (`rules/evaluation.toml`), checked at load: every weight a
//! number ≥ 0, each table with some weight, nothing unknown (`file:line`).

use crate::detect::diagnostics::{line_at, read_toml, Problems};
use crate::detect::RuleErrors;
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml::Spanned;

/// The file under the rules directory.
pub const WEIGHTS_PATH: &str = "evaluation.toml";

/// The overall index: weights of the four dimensions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dimensions {
    /// 传播力.
    pub reach: f64,
    /// 服务力.
    pub service: f64,
    /// 互动力.
    pub interaction: f64,
    /// 认同度.
    pub approval: f64,
}

/// 服务力: weights of the shares of requests received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceWeights {
    /// Accepted within the accept deadline.
    pub accepted_on_time: f64,
    /// Answered by the end of the period.
    pub answered: f64,
    /// Answered within the answer deadline.
    pub answered_on_time: f64,
    /// Not sent back as misrouted.
    pub not_returned: f64,
    /// Not reopened.
    pub not_reopened: f64,
}

/// 互动力: weights of the shares of requests addressed to an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InteractionWeights {
    /// Acknowledged (受理).
    pub acknowledged: f64,
    /// Answered (反馈).
    pub answered: f64,
}

/// When an account or department counts as silent (聋哑).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    /// Judged only with at least this many requests in the period.
    pub min_requests: usize,
    /// Silent when it answered a smaller share than this.
    pub min_answer_share: f64,
    /// An account with no post for this many days at the period's end is silent.
    pub max_quiet_days: f64,
}

/// 传播力: targets and weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReachWeights {
    /// Posts a week for full activity.
    pub posts_per_week: f64,
    /// Reposts + replies + likes per own post for full engagement.
    pub engagement_per_post: f64,
    /// Weight of activity.
    pub activity: f64,
    /// Weight of engagement.
    pub engagement: f64,
    /// Words marking a post as public service.
    pub public_service_words: Vec<String>,
}

/// Every weight and threshold of the evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weights {
    /// The overall index.
    pub dimensions: Dimensions,
    /// 服务力.
    pub service: ServiceWeights,
    /// 互动力.
    pub interaction: InteractionWeights,
    /// 聋哑.
    pub silence: Silence,
    /// 传播力.
    pub reach: ReachWeights,
    /// 认同度 needs at least this many rated answers (or replies saying either way).
    pub min_rated: usize,
    /// 认同度: weights of the satisfaction rate and of the replies' positive share.
    pub approval: ApprovalWeights,
}

/// 认同度: weights.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalWeights {
    /// The satisfaction rate of rated answers.
    pub satisfaction: f64,
    /// The positive share of replies to the account's posts.
    pub replies: f64,
}

type W = Spanned<f64>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DimensionsDef {
    reach: W,
    service: W,
    interaction: W,
    approval: W,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDef {
    accepted_on_time: W,
    answered: W,
    answered_on_time: W,
    not_returned: W,
    not_reopened: W,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionDef {
    acknowledged: W,
    answered: W,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceDef {
    min_requests: usize,
    min_answer_share: W,
    max_quiet_days: W,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReachDef {
    posts_per_week: W,
    engagement_per_post: W,
    activity: W,
    engagement: W,
    public_service_words: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalDef {
    min_rated: usize,
    satisfaction: W,
    replies: W,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsFile {
    dimensions: Spanned<DimensionsDef>,
    service: Spanned<ServiceDef>,
    interaction: Spanned<InteractionDef>,
    reach: Spanned<ReachDef>,
    silence: SilenceDef,
    approval: Spanned<ApprovalDef>,
}

impl Weights {
    /// Load `rules_dir/evaluation.toml`.
    pub fn load(rules_dir: &Path) -> Result<Weights, RuleErrors> {
        let path = rules_dir.join(WEIGHTS_PATH);
        let (src, f) = read_toml::<WeightsFile>(&path).map_err(|e| RuleErrors(vec![e]))?;
        let mut p = Problems::new();
        let mut weight = |table: &str, name: &str, w: &W| -> f64 {
            let v = *w.get_ref();
            if !v.is_finite() || v < 0.0 {
                p.at(
                    &path,
                    line_at(&src, w.span().start),
                    format!("[{table}] {name} = {v}: a weight is a number ≥ 0"),
                );
                return 0.0;
            }
            v
        };
        let d = f.dimensions.get_ref();
        let dimensions = Dimensions {
            reach: weight("dimensions", "reach", &d.reach),
            service: weight("dimensions", "service", &d.service),
            interaction: weight("dimensions", "interaction", &d.interaction),
            approval: weight("dimensions", "approval", &d.approval),
        };
        let s = f.service.get_ref();
        let service = ServiceWeights {
            accepted_on_time: weight("service", "accepted_on_time", &s.accepted_on_time),
            answered: weight("service", "answered", &s.answered),
            answered_on_time: weight("service", "answered_on_time", &s.answered_on_time),
            not_returned: weight("service", "not_returned", &s.not_returned),
            not_reopened: weight("service", "not_reopened", &s.not_reopened),
        };
        let i = f.interaction.get_ref();
        let interaction = InteractionWeights {
            acknowledged: weight("interaction", "acknowledged", &i.acknowledged),
            answered: weight("interaction", "answered", &i.answered),
        };
        let r = f.reach.get_ref();
        let reach = ReachWeights {
            posts_per_week: weight("reach", "posts_per_week", &r.posts_per_week),
            engagement_per_post: weight("reach", "engagement_per_post", &r.engagement_per_post),
            activity: weight("reach", "activity", &r.activity),
            engagement: weight("reach", "engagement", &r.engagement),
            public_service_words: r.public_service_words.clone(),
        };
        let quiet = weight("silence", "max_quiet_days", &f.silence.max_quiet_days);
        let ad = f.approval.get_ref();
        let approval = ApprovalWeights {
            satisfaction: weight("approval", "satisfaction", &ad.satisfaction),
            replies: weight("approval", "replies", &ad.replies),
        };
        for (name, v, w) in [
            ("posts_per_week", reach.posts_per_week, &r.posts_per_week),
            (
                "engagement_per_post",
                reach.engagement_per_post,
                &r.engagement_per_post,
            ),
        ] {
            if v <= 0.0 {
                p.at(
                    &path,
                    line_at(&src, w.span().start),
                    format!("[reach] {name}: a target above 0"),
                );
            }
        }
        let share = *f.silence.min_answer_share.get_ref();
        if !(0.0..=1.0).contains(&share) {
            p.at(
                &path,
                line_at(&src, f.silence.min_answer_share.span().start),
                format!("[silence] min_answer_share = {share}: a share between 0 and 1"),
            );
        }
        let sums = [
            (
                "dimensions",
                f.dimensions.span().start,
                dimensions.reach
                    + dimensions.service
                    + dimensions.interaction
                    + dimensions.approval,
            ),
            (
                "service",
                f.service.span().start,
                service.accepted_on_time
                    + service.answered
                    + service.answered_on_time
                    + service.not_returned
                    + service.not_reopened,
            ),
            (
                "interaction",
                f.interaction.span().start,
                interaction.acknowledged + interaction.answered,
            ),
            (
                "reach",
                f.reach.span().start,
                reach.activity + reach.engagement,
            ),
            (
                "approval",
                f.approval.span().start,
                approval.satisfaction + approval.replies,
            ),
        ];
        for (table, at, sum) in sums {
            if sum <= 0.0 {
                p.at(
                    &path,
                    line_at(&src, at),
                    format!("[{table}]: every weight is 0; give one a weight"),
                );
            }
        }
        p.finish()?;
        Ok(Weights {
            dimensions,
            service,
            interaction,
            silence: Silence {
                min_requests: f.silence.min_requests,
                min_answer_share: share,
                max_quiet_days: quiet,
            },
            reach,
            min_rated: f.approval.get_ref().min_rated.max(1),
            approval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules")
                .join(WEIGHTS_PATH),
        )
        .expect("shipped weights")
    }

    fn load(src: &str) -> Result<Weights, RuleErrors> {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join(WEIGHTS_PATH), src).expect("write");
        Weights::load(dir.path())
    }

    #[test]
    fn the_shipped_weights_load() {
        let w = load(&shipped()).expect("shipped");
        assert_eq!(w.dimensions.service, 0.35);
        assert_eq!(w.silence.min_requests, 3);
    }

    #[test]
    fn bad_weights_are_named_at_their_line() {
        let src = shipped().replace("answered_on_time = 0.35", "answered_on_time = -1");
        let e = load(&src).expect_err("negative").to_string();
        let line = src
            .lines()
            .position(|l| l.starts_with("answered_on_time = -1"))
            .expect("line")
            + 1;
        assert!(e.contains(&format!("evaluation.toml:{line}:")), "{e}");
        assert!(e.contains("answered_on_time"), "{e}");
        let src = shipped()
            .replace("acknowledged = 0.40", "acknowledged = 0")
            .replace("answered = 0.60", "answered = 0");
        let e = load(&src).expect_err("all zero").to_string();
        assert!(e.contains("[interaction]: every weight is 0"), "{e}");
        let e = load(&shipped().replace("[approval]", "[approval]\nmin_stars = 3"))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("min_stars"), "{e}");
        let e = load(&shipped().replace("min_answer_share = 0.5", "min_answer_share = 50"))
            .expect_err("share")
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
    }
}
