//! `notifier_strategy = rabbit`: image events published to RabbitMQ over AMQP 0-9-1.
//!
//! Topology (spec §10, kombu `SimpleQueue` semantics): a message of priority `P` goes to the
//! durable direct exchange `<topic>.<P>` with routing key `<topic>.<P>`, and a durable queue of
//! that same name is bound to it with that routing key, so consumers find the messages even
//! when none was listening at publication time. Bodies are the message as JSON
//! (`application/json`, `utf-8`), persistent (delivery mode 2).
//!
//! Requests never wait for the broker: [`RabbitNotifier::notify`] only puts the message into
//! a bounded queue (a full queue drops it with a warning). One notifier thread owns the
//! AMQP connection (the [lapin] client, driven by `block_on` on that thread) and publishes
//! with publisher confirms, so a message counts as delivered only once the broker has taken
//! it. Every broker operation has a time limit; when connecting or publishing fails, the
//! message is logged at warning level as `undelivered notification <event_type>
//! <message_id>: <reason> -- <message JSON>` and the connection is dropped. The next message
//! reconnects, but not before a backoff delay (1 s, doubling up to 30 s) has passed since the
//! last failed attempt, so a dead broker is not hammered; messages arriving during the
//! backoff are logged as undelivered at once. A connection that broke while idle (broker
//! restarted) is replaced immediately and the message retried once on the new one.
//!
//! The password is never logged: the broker is named as `amqp://user@host:port/vhost`.
//!
//! Known limit: when a connection attempt times out during the AMQP handshake (a peer that
//! accepts TCP and never answers), lapin's I/O thread for that attempt lingers until the peer
//! closes the socket (seen: they all ended when the silent peer went away); attempts are
//! spaced by the backoff, so such threads stay few.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use async_rs::traits::{Executor, Reactor};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::{Message, Notifier};
use crate::config::RabbitOptions;
use crate::error::{Error, Result};

/// Messages waiting for the notifier thread; beyond this, new ones are dropped (logged).
pub const QUEUE_CAPACITY: usize = 1000;
/// Time allowed to open a connection (TCP, TLS, AMQP handshake, channel).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed to each later broker operation (declare, publish, confirmation).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// First delay before reconnecting after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest delay between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long dropping the notifier waits for queued messages to be published.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The runtime lapin's futures and timers run on (async-global-executor + async-io).
type Runtime = async_rs::AGERuntime;

/// Publishes to RabbitMQ from a background thread (see the module documentation).
pub struct RabbitNotifier {
    /// Queue to the notifier thread; `None` once dropping.
    tx: Option<SyncSender<Message>>,
    /// Disconnected when the notifier thread ends (its sender is dropped).
    done: Mutex<Option<Receiver<()>>>,
}

impl RabbitNotifier {
    /// Starts the notifier thread. It connects at once (a failure is only logged: the broker
    /// may come up later) and then publishes what [`Notifier::notify`] queues.
    ///
    /// Fails only when the thread or the AMQP runtime cannot be set up.
    pub fn start(opts: &RabbitOptions) -> Result<RabbitNotifier> {
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| Error::Config(format!("cannot set up the AMQP client runtime: {e}")))?;
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE_CAPACITY);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut worker = Worker::new(opts.clone(), runtime);
        thread::Builder::new()
            .name("notifier".to_string())
            .spawn(move || {
                let _done = done_tx;
                worker.run(&rx);
            })
            .map_err(|e| Error::Internal(format!("cannot start the notifier thread: {e}")))?;
        log::info!(
            "notifications go to {} (exchanges and queues {}.INFO/WARN/ERROR)",
            describe(opts),
            opts.notification_topic
        );
        Ok(RabbitNotifier {
            tx: Some(tx),
            done: Mutex::new(Some(done_rx)),
        })
    }
}

impl Notifier for RabbitNotifier {
    /// Queues the message for the notifier thread; never blocks.
    fn notify(&self, msg: Message) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => undelivered(
                &msg,
                &format!("{QUEUE_CAPACITY} notifications already waiting for the AMQP broker"),
            ),
            Err(TrySendError::Disconnected(msg)) => {
                undelivered(&msg, "the notifier thread has stopped");
            }
        }
    }
}

impl Drop for RabbitNotifier {
    /// Lets the notifier thread publish what is queued, waiting at most [`SHUTDOWN_GRACE`].
    fn drop(&mut self) {
        drop(self.tx.take());
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done
            && done.recv_timeout(SHUTDOWN_GRACE) == Err(mpsc::RecvTimeoutError::Timeout)
        {
            log::warn!(
                "notifier: queued notifications not all published within {} s of shutdown",
                SHUTDOWN_GRACE.as_secs()
            );
        }
    }
}

/// Logs a message that did not reach the broker, with its JSON so that it is not lost.
fn undelivered(msg: &Message, reason: &str) {
    let json = serde_json::to_string(msg).unwrap_or_default();
    log::warn!(
        "undelivered notification {} {}: {reason} -- {json}",
        msg.event_type,
        msg.message_id
    );
}

/// The broker as shown in logs, an AMQP URI without the password:
/// `amqp://user@host:port/vhost` with the vhost escaped as URIs do (`/` is `%2f`).
pub fn describe(opts: &RabbitOptions) -> String {
    let scheme = if opts.use_ssl { "amqps" } else { "amqp" };
    let vhost = opts.virtual_host.replace('%', "%25").replace('/', "%2f");
    format!(
        "{scheme}://{}@{}:{}/{vhost}",
        opts.userid, opts.host, opts.port
    )
}

/// The connection parameters for lapin, built field by field (no URL escaping to get wrong).
fn amqp_uri(opts: &RabbitOptions) -> AMQPUri {
    AMQPUri {
        scheme: if opts.use_ssl {
            AMQPScheme::AMQPS
        } else {
            AMQPScheme::AMQP
        },
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo {
                username: opts.userid.clone(),
                password: opts.password.clone(),
            },
            host: opts.host.clone(),
            port: opts.port,
        },
        vhost: opts.virtual_host.clone(),
        query: AMQPQueryString {
            // TCP connect limit, in ms (the whole handshake is also bounded, see `bounded`).
            connection_timeout: u64::try_from(CONNECT_TIMEOUT.as_millis()).ok(),
            ..AMQPQueryString::default()
        },
    }
}

/// The exchange, queue and routing key of a priority: `<topic>.<PRIORITY>`.
pub fn destination(topic: &str, msg: &Message) -> String {
    format!("{topic}.{}", msg.priority.as_str())
}

/// Runs `fut` on the runtime from this (non-async) thread, giving up after `limit`.
/// Errors name the step (`what`).
fn bounded<T, F>(
    runtime: &Runtime,
    limit: Duration,
    what: &str,
    fut: F,
) -> std::result::Result<T, String>
where
    F: Future<Output = lapin::Result<T>>,
{
    let sleep = runtime.sleep(limit);
    let out = runtime.block_on(async move {
        let mut fut = pin!(fut);
        let mut sleep = pin!(sleep);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    });
    match out {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(format!("{what}: {e}")),
        None => Err(format!(
            "{what}: no answer within {} s",
            limit.as_secs_f64()
        )),
    }
}

/// An open connection with its channel (in confirm mode).
struct Session {
    conn: Connection,
    channel: Channel,
    /// Exchanges/queues declared (and bound) on this connection.
    declared: HashSet<String>,
}

/// The notifier thread's state.
struct Worker {
    opts: RabbitOptions,
    /// `amqp://user@host:port/vhost`, for messages.
    target: String,
    runtime: Runtime,
    session: Option<Session>,
    /// No connection attempt before this instant (after a failure).
    retry_at: Option<Instant>,
    /// Delay to apply after the next failure.
    backoff: Duration,
    /// Why the last attempt failed (shown while waiting for `retry_at`).
    last_error: String,
}

impl Worker {
    fn new(opts: RabbitOptions, runtime: Runtime) -> Worker {
        Worker {
            target: describe(&opts),
            opts,
            runtime,
            session: None,
            retry_at: None,
            backoff: BACKOFF_MIN,
            last_error: String::new(),
        }
    }

    /// Connects once, then publishes every message until the queue's sender is dropped;
    /// finally closes the connection.
    fn run(&mut self, rx: &Receiver<Message>) {
        match self.connect() {
            Ok(session) => self.session = Some(session),
            // Not counted as a failure for the backoff: the first event tries again.
            Err(e) => log::warn!(
                "notifier: cannot reach the AMQP broker {} yet: {e} (retried on the next event)",
                self.target
            ),
        }
        while let Ok(msg) = rx.recv() {
            self.deliver(&msg);
        }
        if let Some(s) = self.session.take() {
            let _ = bounded(
                &self.runtime,
                OPERATION_TIMEOUT,
                "closing the connection",
                s.conn.close(200, "OK".into()),
            );
        }
    }

    /// Publishes one message, or logs it as undelivered.
    fn deliver(&mut self, msg: &Message) {
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if now < at {
                let wait = at.duration_since(now).as_secs_f64();
                undelivered(
                    msg,
                    &format!(
                        "AMQP broker {} unavailable ({}); next connection attempt in {wait:.1} s",
                        self.target, self.last_error
                    ),
                );
                return;
            }
        }
        let body = match serde_json::to_vec(msg) {
            Ok(b) => b,
            Err(e) => return undelivered(msg, &format!("cannot serialise the message: {e}")),
        };
        let had_session = self.session.is_some();
        let mut result = self.publish(msg, &body);
        if let Err(e) = &result
            && had_session
        {
            // The connection may have died while idle: one immediate retry on a new one.
            log::info!(
                "notifier: connection to the AMQP broker {} failed ({e}); reconnecting",
                self.target
            );
            self.session = None;
            result = self.publish(msg, &body);
        }
        match result {
            Ok(()) => {
                self.retry_at = None;
                self.backoff = BACKOFF_MIN;
                log::debug!(
                    "notification {} {} published to {}",
                    msg.event_type,
                    msg.message_id,
                    destination(&self.opts.notification_topic, msg)
                );
            }
            Err(e) => {
                self.session = None;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                undelivered(msg, &e);
                self.last_error = e;
            }
        }
    }

    /// Opens a connection and a channel in confirm mode.
    fn connect(&self) -> std::result::Result<Session, String> {
        let started = Instant::now();
        let props =
            ConnectionProperties::default().with_connection_name("glance-api notifier".into());
        let conn = bounded(
            &self.runtime,
            CONNECT_TIMEOUT,
            &format!("connecting to {}", self.target),
            Connection::connect_uri_with_runtime(amqp_uri(&self.opts), props, self.runtime.clone()),
        )?;
        let channel = bounded(
            &self.runtime,
            OPERATION_TIMEOUT,
            "opening a channel",
            conn.create_channel(),
        )?;
        bounded(
            &self.runtime,
            OPERATION_TIMEOUT,
            "enabling publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )?;
        log::info!(
            "notifier: connected to the AMQP broker {} in {:.0} ms",
            self.target,
            started.elapsed().as_secs_f64() * 1000.0
        );
        Ok(Session {
            conn,
            channel,
            declared: HashSet::new(),
        })
    }

    /// Connects if needed, declares the destination once per connection, publishes and
    /// waits for the broker's confirmation.
    fn publish(&mut self, msg: &Message, body: &[u8]) -> std::result::Result<(), String> {
        if self.session.is_none() {
            self.session = Some(self.connect()?);
        }
        let rt = &self.runtime;
        let Some(session) = self.session.as_mut() else {
            return Err("no connection".to_string());
        };
        let name = destination(&self.opts.notification_topic, msg);
        if !session.declared.contains(&name) {
            declare(rt, &session.channel, &name)?;
            session.declared.insert(name.clone());
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2);
        let confirm = bounded(
            rt,
            OPERATION_TIMEOUT,
            "publishing",
            session.channel.basic_publish(
                name.as_str().into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props,
            ),
        )?;
        match bounded(
            rt,
            OPERATION_TIMEOUT,
            "waiting for the broker's confirmation",
            confirm,
        )? {
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
            Confirmation::Nack(_) => Err("the broker refused the message (nack)".to_string()),
        }
    }
}

/// Declares the durable direct exchange `name`, the durable queue `name`, and binds them
/// with routing key `name` (idempotent on the broker).
fn declare(rt: &Runtime, channel: &Channel, name: &str) -> std::result::Result<(), String> {
    bounded(
        rt,
        OPERATION_TIMEOUT,
        &format!("declaring exchange {name}"),
        channel.exchange_declare(
            name.into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )?;
    bounded(
        rt,
        OPERATION_TIMEOUT,
        &format!("declaring queue {name}"),
        channel.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )?;
    bounded(
        rt,
        OPERATION_TIMEOUT,
        &format!("binding queue {name}"),
        channel.queue_bind(
            name.into(),
            name.into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::Priority;
    use serde_json::Value;

    fn opts() -> RabbitOptions {
        RabbitOptions {
            host: "mq.example.com".into(),
            port: 5671,
            use_ssl: true,
            userid: "glance".into(),
            password: "s3cret-pw".into(),
            virtual_host: "/".into(),
            notification_topic: "glance_notifications".into(),
        }
    }

    #[test]
    fn broker_description_hides_the_password() {
        let d = describe(&opts());
        assert_eq!(d, "amqps://glance@mq.example.com:5671/%2f");
        assert!(!d.contains("s3cret"));
    }

    #[test]
    fn uri_fields() {
        let u = amqp_uri(&opts());
        assert_eq!(u.scheme, AMQPScheme::AMQPS);
        assert_eq!(u.authority.port, 5671);
        assert_eq!(u.authority.userinfo.password, "s3cret-pw");
        assert_eq!(u.vhost, "/");
        assert_eq!(u.query.connection_timeout, Some(3000));
    }

    #[test]
    fn destinations() {
        let m = Message::new("image.upload", Priority::Error, Value::from("x"));
        assert_eq!(
            destination("glance_notifications", &m),
            "glance_notifications.ERROR"
        );
        let m = Message::new("image.upload", Priority::Info, Value::from("x"));
        assert_eq!(destination("t", &m), "t.INFO");
    }
}
