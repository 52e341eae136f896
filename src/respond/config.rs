//! `[respond]`: the respond stage's section of `huiying.toml`.

use serde::Deserialize;
use std::path::PathBuf;

/// `[respond]`: the notice workflow and the publishing of approved notices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RespondConfig {
    /// Run the respond stage (it also needs `rules/matrix` and `rules/templates`).
    pub enabled: bool,
    /// Where the notices, the outbox and the audit log are kept (relative to the config file).
    pub data_dir: PathBuf,
    /// The approval policy.
    pub policy: super::notices::ApprovalPolicy,
    /// Operators: API tokens that identify actors (never logged). Kept for compatibility:
    /// each is an API token with the `operator` role; prefer `[auth]` users and tokens.
    pub operators: Vec<Operator>,
    /// Drills and the demo: every account publishes to this JSON Lines file instead of its
    /// platform (same plan, limits, outbox and audit; nothing leaves the machine).
    pub drill_sink: Option<PathBuf>,
    /// `[respond.smtp]`: e-mail (to departments' duty addresses) through the outbox, as the
    /// account `smtp`; none: no e-mail.
    pub smtp: Option<SmtpConfig>,
    /// `[[respond.bots]]`: IM group bots (WeCom, DingTalk, Feishu) that alerts go to through the
    /// outbox, each as the account `bot:<id>`.
    pub bots: Vec<BotConfig>,
}

/// `[[respond.bots]]`: one IM group bot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// Its name in `[[alerts.rule]] to` (`duty-wecom`).
    pub id: String,
    /// `wecom`, `dingtalk` or `feishu`.
    pub kind: crate::respond::publish::imbot::BotKind,
    /// Environment variable holding the webhook address (it carries the bot's key: never in
    /// the config file, never logged).
    pub url_env: String,
    /// Environment variable holding the signing secret (DingTalk and Feishu bots with 加签).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Messages per hour at most (the bots allow 20 a minute).
    #[serde(default = "default_bot_per_hour")]
    pub per_hour: u32,
}

fn default_bot_per_hour() -> u32 {
    1200
}

impl BotConfig {
    /// The outbox account of the bot.
    pub fn account(&self) -> String {
        format!("bot:{}", self.id)
    }
}

/// `[respond.smtp]`: the SMTP server e-mail goes through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain: a relay on the office's network), `smtps://host:port`
    /// (implicit TLS) or `smtp+starttls://host:port`.
    pub url: String,
    /// The sender address (`huiying@office.example`, or `回应 <huiying@office.example>`).
    pub from: String,
    /// Environment variable holding `user:password` (never logged); none: no authentication.
    #[serde(default)]
    pub credentials_env: Option<String>,
    /// E-mails per hour at most (the limiter of the `smtp` account).
    #[serde(default = "default_mail_per_hour")]
    pub per_hour: u32,
    /// Seconds an SMTP exchange may take.
    #[serde(default = "default_mail_timeout")]
    pub timeout_secs: u64,
}

fn default_mail_per_hour() -> u32 {
    600
}

fn default_mail_timeout() -> u64 {
    20
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            enabled: true,
            data_dir: PathBuf::from("huiying-data"),
            policy: Default::default(),
            operators: Vec::new(),
            drill_sink: None,
            smtp: None,
            bots: Vec::new(),
        }
    }
}

/// One operator of the API: a name (the actor of the audit log) and where its token is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// The actor name (`alice`).
    pub name: String,
    /// Environment variable holding the operator's API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the operator's API token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Operator {
    /// The operator's token (read now; never logged).
    pub fn token(&self) -> Result<String, String> {
        let raw = if let Some(var) = &self.token_env {
            std::env::var(var).map_err(|_| {
                format!(
                    "operator {}: environment variable {var} is not set",
                    self.name
                )
            })?
        } else if let Some(f) = &self.token_file {
            std::fs::read_to_string(f)
                .map_err(|e| format!("operator {}: token file {}: {e}", self.name, f.display()))?
        } else {
            return Err(format!(
                "operator {}: no token_env or token_file",
                self.name
            ));
        };
        let t = raw.trim();
        if t.is_empty() {
            return Err(format!("operator {}: empty token", self.name));
        }
        Ok(t.to_string())
    }
}
