//! Alerting: violations, drift, SLO and waiver alerts become [`model::Alert`]s
//! with labels; [`dispatch`] routes them through the tree ([`route`]),
//! groups, silences and inhibits them ([`mute`]), and [`receivers`] deliver
//! the notifications to Slack, PagerDuty and signed webhooks.
//! [`runner`] is the task that drives it all and keeps the notification
//! log, so that a restart neither loses nor repeats a page; [`conditions`]
//! fires and resolves alerts of conditions that hold or not.

pub mod conditions;
pub mod dispatch;
pub mod matcher;
pub mod model;
pub mod mute;
pub mod receivers;
pub mod route;
pub mod runner;
