//! The case model: a citizen request's states and the transitions between them, its requesters,
//! its history, and the reading of a requester's rating of the answer.
//!
//! ```text
//! received ──accept (受理)──► accepted ──assign (转办)──► assigned ──start──► in_progress
//!                                 ▲                          │ return (退回: misrouted)       │
//!                                 └──────────────────────────┘◄───────────────────────────────┘
//! assigned / in_progress ──answer (反馈)──► answered ──close──► closed
//! answered / closed ──reopen (a follow-up, 不满意)──► accepted
//! ```
//!
//! Transitions are pure: they take the actor and the time and say why they cannot happen; the
//! workflow that stores cases and writes the audit log is built on them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a case is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Taken in, not yet acknowledged.
    Received,
    /// Acknowledged (受理): waiting for a department.
    Accepted,
    /// Transferred to a department (转办).
    Assigned,
    /// The department is working on it.
    InProgress,
    /// The department's answer went back to the requesters (反馈).
    Answered,
    /// Finished.
    Closed,
}

impl CaseState {
    /// Every state, in order (metric labels).
    pub const ALL: [CaseState; 6] = [
        CaseState::Received,
        CaseState::Accepted,
        CaseState::Assigned,
        CaseState::InProgress,
        CaseState::Answered,
        CaseState::Closed,
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Received => "received",
            CaseState::Accepted => "accepted",
            CaseState::Assigned => "assigned",
            CaseState::InProgress => "in_progress",
            CaseState::Answered => "answered",
            CaseState::Closed => "closed",
        }
    }

    /// Still waiting for an answer.
    pub fn is_open(self) -> bool {
        !matches!(self, CaseState::Answered | CaseState::Closed)
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One citizen who raised the problem (the same problem from many citizens is one case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// Platform handle (or the web form's / hotline's reference).
    pub handle: String,
    /// The mention (post, comment, message) that raised it.
    pub mention_id: String,
    /// When (ms).
    pub at: i64,
    /// The platform post an acknowledgement or answer replies to (platform cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// An answer written by a department, waiting for an operator's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAnswer {
    /// The text.
    pub text: String,
    /// Who wrote it (may not approve it).
    pub by: String,
    /// When (ms).
    pub at: i64,
}

/// A requester's verdict on the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// 满意, 谢谢, solved.
    Satisfied,
    /// 不满意, 还没解决: reopens the case.
    Dissatisfied,
}

/// Cues of a rating in a requester's reply to the answer, checked in this order (a negation
/// first: "不满意" contains "满意").
const DISSATISFIED: [&str; 16] = [
    "不满意",
    "不太满意",
    "还没解决",
    "没有解决",
    "没解决",
    "还是没",
    "依然没",
    "仍然没",
    "敷衍",
    "没用",
    "not satisfied",
    "dissatisfied",
    "unsatisfied",
    "not solved",
    "still not",
    "not fixed",
];
const SATISFIED: [&str; 12] = [
    "满意",
    "谢谢",
    "感谢",
    "已解决",
    "解决了",
    "好了",
    "点赞",
    "satisfied",
    "thank you",
    "thanks",
    "solved",
    "fixed",
];

/// The rating a reply to the answer carries, if any (lower-cased and simplified text is best;
/// plain text works for these cues).
pub fn read_satisfaction(text: &str) -> Option<Satisfaction> {
    let t = text.to_lowercase();
    if DISSATISFIED.iter().any(|c| t.contains(c)) {
        Some(Satisfaction::Dissatisfied)
    } else if SATISFIED.iter().any(|c| t.contains(c)) {
        Some(Satisfaction::Satisfied)
    } else {
        None
    }
}

/// One entry of a case's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseEvent {
    /// When (ms).
    pub at: i64,
    /// Who (a user, a department, `system` for intake).
    pub actor: String,
    /// What: `receive`, `accept`, `assign`, `start`, `return`, `answer`, `close`, `reopen`,
    /// `rate`, `join` (another requester).
    pub action: String,
    /// Details (the department, the reason, the rating).
    pub detail: String,
}

/// Where a case came in, and so where its acknowledgement and answer go back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Channel {
    /// A mention on a platform addressed to a matrix account: answered by that account, as a
    /// reply (Mastodon) or comment (Weibo) to each requester's post.
    Platform {
        /// The matrix account that was addressed.
        account: String,
    },
    /// `POST /api/cases` (a web form, a hotline system, an operator): answered by e-mail when a
    /// contact address was given, otherwise read back through the API.
    #[default]
    Api,
    /// Open311 GeoReport v2 (`POST /open311/v2/requests.json`): read back through Open311.
    Open311,
}

/// A requester's contact details: given only by forms and Open311, kept apart from the case
/// (the case store's `contacts` table / key), never on the wall, shown to operators and the
/// case's department only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// E-mail address (answers go there for API and Open311 cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Telephone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A request as it comes in, from any channel, before it is a case (or joins one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Intake {
    /// The source item's id, unique per source (a mention id; `open311:…` / `api:…` for the
    /// others): the same item never makes two cases.
    pub source_id: String,
    /// When it was raised (ms).
    pub at: i64,
    /// The citizen's words.
    pub text: String,
    /// A title, if the channel has one.
    pub title: Option<String>,
    /// Who: platform handle, or the form's / hotline's reference.
    pub handle: String,
    /// Contact details, when given.
    pub contact: Option<Contact>,
    /// Region: a division code or name (resolved by the gazetteer).
    pub region: Option<String>,
    /// A street address, as given.
    pub address: Option<String>,
    /// WGS84 latitude and longitude, as given.
    pub lat: Option<f64>,
    /// Longitude.
    pub long: Option<f64>,
    /// Request kind given by the channel (an Open311 service names one); else read from the text.
    pub kind: Option<String>,
    /// Department given by the channel; else routed.
    pub department: Option<String>,
    /// Where it came in.
    pub channel: Channel,
    /// Links to attachments (photos).
    pub media: Vec<String>,
    /// The platform post an acknowledgement or answer replies to (platform intake).
    pub reply_target: Option<String>,
}

/// A citizen request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Stable id (from the first mention: the same mention never makes two cases).
    pub id: String,
    /// Where it is.
    pub state: CaseState,
    /// Request kinds (`rules/requests.toml` ids), the primary first.
    pub kinds: Vec<String>,
    /// The department it is (or will be) transferred to.
    pub department: Option<String>,
    /// The router's confidence in `department` (0 when set by a person).
    pub confidence: f64,
    /// Division code, if known.
    pub region: Option<String>,
    /// The first request's text.
    pub text: String,
    /// Everyone who raised it; each gets the answer.
    pub requesters: Vec<Requester>,
    /// An open emergency incident it belongs to (a 求助 in its region).
    pub incident_id: Option<String>,
    /// Departments that sent it back (退回) as not theirs.
    pub returned_by: Vec<String>,
    /// The answer fed back (反馈).
    pub answer: Option<String>,
    /// The requesters' verdict, once read.
    pub satisfaction: Option<Satisfaction>,
    /// Times it was reopened.
    pub reopened: u32,
    /// Taken in at (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Everything that happened, in order.
    pub history: Vec<CaseEvent>,
    /// A title (forms, Open311, imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A street address, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Latitude (WGS84), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Longitude (WGS84), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    /// Links to attachments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<String>,
    /// Where it came in (and where answers go).
    #[serde(default)]
    pub channel: Channel,
    /// Top priority: a 求助 during an open emergency in its region.
    #[serde(default)]
    pub urgent: bool,
    /// When it must be accepted by (ms), from the calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_due: Option<i64>,
    /// When it must be answered by (ms), from the calendar; set on assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_due: Option<i64>,
    /// Bumped by every change (optimistic concurrency between instances and editors).
    #[serde(default)]
    pub version: u64,
    /// An answer waiting for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_answer: Option<PendingAnswer>,
    /// The outbox groups (`notice_id`s) of its acknowledgements, answers and e-mails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<String>,
}

/// Why a transition cannot happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// Not from this state.
    #[error("case {id} is {state}: cannot {op}")]
    InvalidState {
        /// The case.
        id: String,
        /// Its state.
        state: CaseState,
        /// What was asked.
        op: &'static str,
    },
    /// Something given is not usable (empty text, unknown department…).
    #[error("{0}")]
    Invalid(String),
}

impl Case {
    /// A new case from its first request.
    pub fn receive(
        id: impl Into<String>,
        requester: Requester,
        text: impl Into<String>,
        kinds: Vec<String>,
        department: Option<String>,
        confidence: f64,
        region: Option<String>,
    ) -> Case {
        let at = requester.at;
        let mut c = Case {
            id: id.into(),
            state: CaseState::Received,
            kinds,
            department,
            confidence,
            region,
            text: text.into(),
            requesters: Vec::new(),
            incident_id: None,
            returned_by: Vec::new(),
            answer: None,
            satisfaction: None,
            reopened: 0,
            created_at: at,
            updated_at: at,
            history: Vec::new(),
            title: None,
            address: None,
            lat: None,
            long: None,
            media: Vec::new(),
            channel: Channel::Api,
            urgent: false,
            accept_due: None,
            answer_due: None,
            version: 0,
            pending_answer: None,
            outbox: Vec::new(),
        };
        let detail = format!("from {}", requester.handle);
        c.requesters.push(requester);
        c.record(at, "system", "receive", detail);
        c
    }

    /// Add an entry to the history (and bump the version).
    pub fn record(&mut self, at: i64, actor: &str, action: &str, detail: impl Into<String>) {
        self.updated_at = self.updated_at.max(at);
        self.version += 1;
        self.history.push(CaseEvent {
            at,
            actor: actor.to_string(),
            action: action.to_string(),
            detail: detail.into(),
        });
    }

    fn need(&self, ok: &[CaseState], op: &'static str) -> Result<(), CaseError> {
        if ok.contains(&self.state) {
            Ok(())
        } else {
            Err(CaseError::InvalidState {
                id: self.id.clone(),
                state: self.state,
                op,
            })
        }
    }

    /// Another citizen raised the same problem: they join (once per handle) and get the answer.
    pub fn join(&mut self, r: Requester) -> bool {
        if self.requesters.iter().any(|x| x.handle == r.handle) {
            return false;
        }
        let at = r.at;
        let detail = format!("{} ({} requesters)", r.handle, self.requesters.len() + 1);
        self.requesters.push(r);
        self.record(at, "system", "join", detail);
        true
    }

    /// 受理: acknowledged.
    pub fn accept(&mut self, actor: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Received], "accept")?;
        self.state = CaseState::Accepted;
        self.record(at, actor, "accept", "");
        Ok(())
    }

    /// 转办: transferred to `department` (a department that returned it may not get it back).
    pub fn assign(&mut self, department: &str, actor: &str, at: i64) -> Result<(), CaseError> {
        // Accepted, or assigned and not started yet (改派: an operator corrects the routing).
        self.need(&[CaseState::Accepted, CaseState::Assigned], "assign")?;
        if department.trim().is_empty() {
            return Err(CaseError::Invalid("empty department".into()));
        }
        if self.state == CaseState::Assigned && self.department.as_deref() == Some(department) {
            return Err(CaseError::Invalid(format!(
                "case {} is already with {department}",
                self.id
            )));
        }
        if self.returned_by.iter().any(|d| d == department) {
            return Err(CaseError::Invalid(format!(
                "{department} returned case {} as not theirs",
                self.id
            )));
        }
        self.department = Some(department.to_string());
        self.state = CaseState::Assigned;
        self.record(at, actor, "assign", department);
        Ok(())
    }

    /// The department started work.
    pub fn start(&mut self, actor: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Assigned], "start")?;
        self.state = CaseState::InProgress;
        self.record(at, actor, "start", "");
        Ok(())
    }

    /// 退回: the department says it is not theirs; back to accepted, to be routed again.
    pub fn send_back(&mut self, actor: &str, reason: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Assigned, CaseState::InProgress], "return")?;
        if reason.trim().is_empty() {
            return Err(CaseError::Invalid("a return needs a reason".into()));
        }
        if let Some(d) = self.department.take() {
            self.returned_by.push(d);
        }
        self.state = CaseState::Accepted;
        self.record(at, actor, "return", reason);
        Ok(())
    }

    /// 反馈: the department's answer, to go back to every requester.
    pub fn answer(&mut self, text: &str, actor: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Assigned, CaseState::InProgress], "answer")?;
        if text.trim().is_empty() {
            return Err(CaseError::Invalid("empty answer".into()));
        }
        self.answer = Some(text.to_string());
        self.satisfaction = None;
        self.state = CaseState::Answered;
        self.record(at, actor, "answer", "");
        Ok(())
    }

    /// Finished.
    pub fn close(&mut self, actor: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Answered], "close")?;
        self.state = CaseState::Closed;
        self.record(at, actor, "close", "");
        Ok(())
    }

    /// A requester's reply to the answer: a rating is recorded; 不满意 reopens the case.
    pub fn rate(&mut self, s: Satisfaction, actor: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Answered, CaseState::Closed], "rate")?;
        self.satisfaction = Some(s);
        let detail = match s {
            Satisfaction::Satisfied => "satisfied",
            Satisfaction::Dissatisfied => "dissatisfied",
        };
        self.record(at, actor, "rate", detail);
        if s == Satisfaction::Dissatisfied {
            self.reopen(actor, "dissatisfied with the answer", at)?;
        }
        Ok(())
    }

    /// A follow-up on an answered or closed case: it is open again, with its department.
    pub fn reopen(&mut self, actor: &str, why: &str, at: i64) -> Result<(), CaseError> {
        self.need(&[CaseState::Answered, CaseState::Closed], "reopen")?;
        self.reopened += 1;
        self.state = match self.department {
            Some(_) => CaseState::Assigned,
            None => CaseState::Accepted,
        };
        self.record(at, actor, "reopen", why);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> Case {
        Case::receive(
            "c-1",
            Requester {
                handle: "金凤小王".into(),
                mention_id: "m1".into(),
                at: 1_000,
                target: None,
            },
            "小区停水两天了",
            vec!["complaint".into()],
            Some("water".into()),
            0.8,
            Some("640106".into()),
        )
    }

    #[test]
    fn the_whole_loop_and_the_history_that_records_it() {
        let mut c = case();
        assert!(c.join(Requester {
            handle: "老张".into(),
            mention_id: "m2".into(),
            at: 2_000,
            target: None,
        }));
        // The same citizen twice is one requester.
        assert!(!c.join(Requester {
            handle: "老张".into(),
            mention_id: "m3".into(),
            at: 2_500,
            target: None,
        }));
        c.accept("duty", 3_000).expect("accept");
        c.assign("water", "duty", 4_000).expect("assign");
        c.start("water", 5_000).expect("start");
        c.answer("已恢复供水。", "water", 6_000).expect("answer");
        c.rate(Satisfaction::Satisfied, "金凤小王", 7_000)
            .expect("rate");
        c.close("duty", 8_000).expect("close");
        let actions: Vec<&str> = c.history.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["receive", "join", "accept", "assign", "start", "answer", "rate", "close"]
        );
        assert_eq!(c.requesters.len(), 2);
        assert_eq!(c.updated_at, 8_000);
        assert_eq!(c.state, CaseState::Closed);
    }

    #[test]
    fn wrong_order_is_refused_and_changes_nothing() {
        let mut c = case();
        let before = c.clone();
        let refused = [
            c.assign("water", "duty", 2),
            c.answer("x", "water", 2),
            c.close("duty", 2),
            c.send_back("water", "not ours", 2),
            c.rate(Satisfaction::Satisfied, "x", 2),
            c.reopen("x", "again", 2),
        ];
        for r in refused {
            assert!(matches!(r, Err(CaseError::InvalidState { .. })), "{r:?}");
        }
        assert_eq!(c, before);
        c.accept("duty", 2).expect("accept");
        let accepted = c.clone();
        assert!(matches!(
            c.accept("duty", 3),
            Err(CaseError::InvalidState { .. })
        ));
        assert!(matches!(
            c.assign(" ", "duty", 4),
            Err(CaseError::Invalid(_))
        ));
        assert_eq!(c, accepted);
    }

    #[test]
    fn an_assigned_case_not_started_may_go_to_another_department_once_started_not() {
        let mut c = case();
        c.accept("duty", 2).expect("accept");
        c.assign("housing", "duty", 3).expect("assign");
        // The same department again is no change.
        assert!(matches!(
            c.assign("housing", "duty", 4),
            Err(CaseError::Invalid(_))
        ));
        c.assign("water", "duty", 5).expect("改派");
        assert_eq!(c.department.as_deref(), Some("water"));
        assert_eq!(c.state, CaseState::Assigned);
        c.start("water", 6).expect("start");
        assert!(matches!(
            c.assign("housing", "duty", 7),
            Err(CaseError::InvalidState { .. })
        ));
    }

    #[test]
    fn a_return_reroutes_and_the_returning_department_is_not_given_it_again() {
        let mut c = case();
        c.accept("duty", 2).expect("accept");
        c.assign("housing", "duty", 3).expect("assign");
        assert!(c.send_back("housing", " ", 4).is_err());
        c.send_back("housing", "停水归水务", 4).expect("return");
        assert_eq!(c.state, CaseState::Accepted);
        assert_eq!(c.department, None);
        assert!(c.assign("housing", "duty", 5).is_err());
        c.assign("water", "duty", 6).expect("reassign");
        assert_eq!(c.returned_by, ["housing"]);
    }

    #[test]
    fn dissatisfaction_and_follow_ups_reopen_it_with_its_department() {
        let mut c = case();
        c.accept("duty", 2).expect("accept");
        c.assign("water", "duty", 3).expect("assign");
        c.answer("已处理", "water", 4).expect("answer");
        c.rate(Satisfaction::Dissatisfied, "金凤小王", 5)
            .expect("rate");
        assert_eq!(c.state, CaseState::Assigned);
        assert_eq!(c.reopened, 1);
        c.answer("已派人检修，今晚恢复", "water", 6)
            .expect("answer");
        c.close("duty", 7).expect("close");
        c.reopen("金凤小王", "又停水了", 8).expect("reopen");
        assert_eq!((c.state, c.reopened), (CaseState::Assigned, 2));
    }

    #[test]
    fn ratings_are_read_from_replies_negations_first() {
        for (t, want) in [
            ("非常满意，谢谢！", Some(Satisfaction::Satisfied)),
            ("不满意，问题根本没解决", Some(Satisfaction::Dissatisfied)),
            ("还没解决，水还是黄的", Some(Satisfaction::Dissatisfied)),
            ("已解决，点赞", Some(Satisfaction::Satisfied)),
            ("Thanks, it's fixed now", Some(Satisfaction::Satisfied)),
            (
                "Still not fixed after a week",
                Some(Satisfaction::Dissatisfied),
            ),
            ("请问什么时候来修", None),
        ] {
            assert_eq!(read_satisfaction(t), want, "{t}");
        }
    }
}
