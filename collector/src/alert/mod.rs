//! Alerting's model (pure): violations, drift, SLO and waiver alerts
//! become [`model::Alert`]s with labels; [`dispatch`] routes them through
//! the tree ([`route`]), groups, silences and inhibits them ([`mute`]) and
//! makes [`notification::Notification`]s. [`crate::receivers`] deliver
//! them to Slack, PagerDuty and signed webhooks; the task that drives it
//! all and keeps the notification log is [`crate::tasks::alerting`], and
//! [`crate::tasks::conditions`] fires and resolves alerts of conditions
//! that hold or not ([`reminders`]: waivers about to expire). [`guidance`]
//! adds what to do: the control's fix line.

pub mod dispatch;
pub mod guidance;
pub mod matcher;
pub mod model;
pub mod mute;
pub mod notification;
pub mod reminders;
pub mod route;
