//! The integration suite: one test binary (faster to link than one per file), one module per
//! concern. Shared helpers live in `util`.

mod access;
mod alerts;
mod background;
mod case_e2e;
mod case_flow;
mod cases;
mod console;
mod crash;
mod crisislex;
mod dashboards;
mod dispatch;
mod distributed_publish;
mod distributed_store;
mod email;
mod emerging;
mod eval;
mod evaluation;
mod fuzz;
mod jetstream;
mod linkage;
mod mastodon;
mod matrix;
mod notices;
mod one_incident;
mod open311;
mod opinion;
mod outbox;
mod publish;
mod push;
mod redis_server;
mod regions;
mod replay;
mod replies;
mod respond;
mod rules;
mod rumor;
mod service;
mod util;
mod wall;
mod webdriver;

#[path = "../fake_platform/mod.rs"]
mod fake_platform;
