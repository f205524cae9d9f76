//! Image event notifications (spec §10): `image.upload`, `image.update`, `image.delete`.
//!
//! One message builder ([`Message::new`]) and one trait ([`Notifier`]) with a strategy per
//! `notifier_strategy`: `noop` (default), `logging` (here) and `rabbit` ([`rabbit`]). A
//! notifier never fails or stalls the request that triggered it: delivery problems are
//! logged.

pub mod rabbit;

use serde::Serialize;
use serde_json::Value;

use crate::config::{NotifierStrategy, RabbitOptions};
use crate::error::Result;
use crate::image::Image;
use crate::store::redact_uri;
use crate::timeutil;

/// Priority of an event, as Glance named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Priority {
    /// Normal events.
    #[serde(rename = "INFO")]
    Info,
    /// Warnings (never sent by Glance Diablo, kept for completeness).
    #[serde(rename = "WARN")]
    Warn,
    /// Failures.
    #[serde(rename = "ERROR")]
    Error,
}

impl Priority {
    /// The wire name (`INFO`, `WARN`, `ERROR`), also the routing-key suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Info => "INFO",
            Priority::Warn => "WARN",
            Priority::Error => "ERROR",
        }
    }
}

/// One notification message, serialised as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Random UUID.
    pub message_id: String,
    /// Host name of the publisher.
    pub publisher_id: String,
    /// `image.upload`, `image.update`, `image.delete`.
    pub event_type: String,
    /// `INFO`, `WARN` or `ERROR`.
    pub priority: Priority,
    /// Image dict, image id or error message.
    pub payload: Value,
    /// `str(utcnow())`: `2011-09-21 20:33:05.123456`.
    pub timestamp: String,
}

impl Message {
    /// Builds a message stamped now.
    pub fn new(event_type: &str, priority: Priority, payload: Value) -> Message {
        Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            publisher_id: hostname(),
            event_type: event_type.to_string(),
            priority,
            payload,
            timestamp: timeutil::notification_form(&timeutil::now()),
        }
    }
}

/// An image dict for payloads, with the location's credentials removed.
pub fn image_payload(image: &Image) -> Value {
    let mut v = image.to_json(true);
    if let Some(loc) = &image.location {
        v["location"] = Value::from(redact_uri(loc));
    }
    v
}

/// Where notifications go.
pub trait Notifier: Send + Sync {
    /// Delivers (or logs the failure to deliver) one message. Never blocks for long.
    fn notify(&self, msg: Message);

    /// Shorthand: an INFO event.
    fn info(&self, event_type: &str, payload: Value) {
        self.notify(Message::new(event_type, Priority::Info, payload));
    }

    /// Shorthand: an ERROR event.
    fn error(&self, event_type: &str, payload: Value) {
        self.notify(Message::new(event_type, Priority::Error, payload));
    }
}

/// `notifier_strategy = noop`: drops every message.
pub struct NoopNotifier;

impl Notifier for NoopNotifier {
    fn notify(&self, _msg: Message) {}
}

/// `notifier_strategy = logging`: one JSON log line per event at the event's level, from
/// the logger `glance::notifier::logging_notifier` (Glance's `glance.notifier.logging_notifier`;
/// it logged the dict's Python repr, we log JSON).
pub struct LoggingNotifier;

impl Notifier for LoggingNotifier {
    fn notify(&self, msg: Message) {
        let line = serde_json::to_string(&msg).unwrap_or_default();
        let level = match msg.priority {
            Priority::Info => log::Level::Info,
            Priority::Warn => log::Level::Warn,
            Priority::Error => log::Level::Error,
        };
        log::log!(target: "glance::notifier::logging_notifier", level, "{line}");
    }
}

/// Builds the notifier named by `notifier_strategy` (`noop`/`default`, `logging`, `rabbit`);
/// `rabbit` uses the `rabbit_*` options and starts its notifier thread.
pub fn from_strategy(
    strategy: NotifierStrategy,
    rabbit: &RabbitOptions,
) -> Result<Box<dyn Notifier>> {
    match strategy {
        NotifierStrategy::Noop => Ok(Box::new(NoopNotifier)),
        NotifierStrategy::Logging => Ok(Box::new(LoggingNotifier)),
        NotifierStrategy::Rabbit => Ok(Box::new(rabbit::RabbitNotifier::start(rabbit)?)),
    }
}

/// The machine's host name (`publisher_id`, lease holders), read from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_fields() {
        let m = Message::new("image.delete", Priority::Info, Value::from("abc"));
        let v = serde_json::to_value(&m).unwrap_or_default();
        for key in [
            "message_id",
            "publisher_id",
            "event_type",
            "priority",
            "payload",
            "timestamp",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["priority"], "INFO");
        assert_eq!(v["timestamp"].as_str().map(|t| t.contains(' ')), Some(true));
    }

    #[test]
    fn payload_hides_credentials() {
        let mut img = Image::new("i".into());
        img.location = Some("swift+https://user:secretkey@host/v1/c/i".into());
        let v = image_payload(&img).to_string();
        assert!(!v.contains("secretkey"), "{v}");
    }

    #[test]
    fn strategies() {
        let rabbit = RabbitOptions::default();
        assert!(from_strategy(NotifierStrategy::Noop, &rabbit).is_ok());
        assert!(from_strategy(NotifierStrategy::Logging, &rabbit).is_ok());
    }
}
