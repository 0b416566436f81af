//! One destination's lane: take the oldest pending delivery, wait until it is due and the
//! platform's limits allow, post it, record the outcome; repeat.
//!
//! The head of the lane blocks the rest (a delivery waiting for its retry holds back younger
//! ones) because order per destination is part of the contract.
//!
//! While messages flow, the lane reads the queue in batches and does not wait for each "done"
//! to commit before posting the next one: the marks join the writer's group commits, so a lane
//! is not held to one fsync per message. At most [`MAX_UNCONFIRMED`] posted messages wait for
//! their mark; those are the only ones a crash can send twice. Any other outcome (retry, rate
//! limit, dead) and a head that is not due yet settle the marks and re-read the queue from the
//! store (so `deliveries retry` on a waiting head takes effect); only the short waits of the
//! platform's pacing keep the queue.

use super::client::{self, Outcome, RateHeaders};
use super::policy::{self, AfterFailure};
use super::{GlobalLimits, Webhooks};
use crate::config::{Destination, Kind};
use crate::loaded::Live;
use crate::render::console;
use crate::store::{now_ms, Delivery, DeliveryId, Reschedule, Store, StoreError};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::VecDeque;
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How often an idle lane looks at the store anyway (picks up `deliveries retry` from the CLI).
const POLL: Duration = Duration::from_secs(1);
/// Pending deliveries read from the store at once.
const BATCH: usize = 64;
/// Posted messages whose "done" may still be on its way to the disk, per lane.
const MAX_UNCONFIRMED: usize = 16;

pub(super) struct Lane {
    pub name: String,
    pub store: Store,
    pub live: Live,
    pub client: reqwest::Client,
    pub notify: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
    pub global: GlobalLimits,
    pub webhooks: Webhooks,
}

/// Client-side pacing of one webhook, so a healthy run never meets a 429. Shared by every lane
/// posting to that webhook.
pub(crate) struct Webhook {
    /// Slack: about one message per second, short bursts tolerated.
    slack: DefaultDirectRateLimiter,
    /// Discord: held for the whole post, so one post at a time goes to the webhook and the
    /// X-RateLimit-* headers of each answer describe the bucket exactly. The value: the bucket
    /// is empty until this instant.
    discord: tokio::sync::Mutex<Option<Instant>>,
}

impl Webhook {
    fn new() -> Webhook {
        let burst = NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN);
        Webhook {
            slack: RateLimiter::direct(Quota::with_period(Duration::from_secs(1)).map_or_else(
                || Quota::per_second(NonZeroU32::MIN),
                |q| q.allow_burst(burst),
            )),
            discord: tokio::sync::Mutex::new(None),
        }
    }
}

impl Lane {
    pub async fn run(mut self) {
        // Read from the store, not yet sent, oldest first.
        let mut queue: VecDeque<Delivery> = VecDeque::new();
        // "Done" marks on their way to the store, oldest first.
        let mut marks: VecDeque<JoinHandle<()>> = VecDeque::new();
        // How many deliveries the next read takes: one while the head waits for its time.
        let mut limit = BATCH;
        loop {
            // A dropped sender (the service was dropped without `stop`) also ends the lane.
            if *self.shutdown.borrow() || self.shutdown.has_changed().is_err() {
                break;
            }
            let Some(delivery) = queue.pop_front() else {
                // The marks must be in before the store is asked what is still pending.
                settle(&mut marks).await;
                let name = self.name.clone();
                match self.store.heads(&name, limit).await {
                    Ok(heads) if heads.is_empty() => self.idle(POLL).await,
                    Ok(heads) => queue = heads.into(),
                    Err(e) => {
                        tracing::warn!(destination = %self.name, error = %e, "cannot read the queue");
                        self.idle(POLL).await;
                    }
                }
                continue;
            };
            match self.step(delivery, &mut marks).await {
                Step::Sent => limit = BATCH,
                Step::Paced(d) => queue.push_front(*d),
                Step::NotDue => {
                    queue.clear();
                    limit = 1;
                }
                Step::Changed => {
                    queue.clear();
                    limit = BATCH;
                }
            }
        }
        settle(&mut marks).await;
    }

    /// Sends `delivery` if it is due and the platform's limits allow.
    async fn step(&mut self, delivery: Delivery, marks: &mut VecDeque<JoinHandle<()>>) -> Step {
        // Before any pacing lock is taken, so other lanes on the webhook never wait for the store.
        if marks.len() >= MAX_UNCONFIRMED {
            if let Some(oldest) = marks.pop_front() {
                let _ = oldest.await;
            }
        }
        let loaded = self.live.get();
        let Some(dest) = loaded.config.destinations.get(&self.name) else {
            self.dead(
                &delivery,
                None,
                "destination removed from config".into(),
                false,
            )
            .await;
            return Step::Changed;
        };
        if dest.kind != delivery.kind {
            let why = format!(
                "destination is now a {} destination but the message was rendered for {}",
                dest.kind.as_str(),
                delivery.kind
            );
            self.dead(&delivery, None, why, false).await;
            return Step::Changed;
        }
        let now = now_ms();
        if delivery.next_attempt_at > now {
            let wait = Duration::from_millis((delivery.next_attempt_at - now) as u64);
            self.idle(wait.min(POLL)).await;
            return Step::NotDue;
        }
        let dest = dest.clone();
        drop(loaded);
        match dest.kind {
            Kind::Discord => {
                let hook = self.webhook(&dest);
                let mut bucket = tokio::select! {
                    b = hook.discord.lock() => b,
                    _ = self.shutdown.changed() => return Step::Paced(Box::new(delivery)),
                };
                if let Some(wait) = self.discord_wait(&dest, *bucket) {
                    drop(bucket);
                    self.idle(wait.min(POLL)).await;
                    return Step::Paced(Box::new(delivery));
                }
                self.attempt(&dest, delivery, Some(&mut *bucket), marks)
                    .await
            }
            Kind::Slack => {
                let hook = self.webhook(&dest);
                if let Err(not_until) = hook.slack.check() {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    self.idle(wait.min(POLL)).await;
                    return Step::Paced(Box::new(delivery));
                }
                self.attempt(&dest, delivery, None, marks).await
            }
            Kind::Console => self.attempt(&dest, delivery, None, marks).await,
        }
    }

    /// The shared pacing state of the destination's webhook.
    fn webhook(&self, dest: &Destination) -> Arc<Webhook> {
        let key = webhook_key(dest);
        match self.webhooks.lock() {
            Ok(mut hooks) => hooks
                .entry(key)
                .or_insert_with(|| Arc::new(Webhook::new()))
                .clone(),
            Err(_) => Arc::new(Webhook::new()),
        }
    }

    /// Sleeps until `d` passes, new work is announced, or shutdown begins.
    async fn idle(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.notify.notified() => {}
            _ = self.shutdown.changed() => {}
        }
    }

    /// How long Discord's limits hold the next post back: the global limit of the host, or
    /// the webhook's bucket (`bucket`: empty until then).
    fn discord_wait(&self, dest: &Destination, bucket: Option<Instant>) -> Option<Duration> {
        let now = Instant::now();
        let host = host_of(dest);
        let global = self
            .global
            .lock()
            .ok()
            .and_then(|g| g.get(&host).copied())
            .filter(|t| *t > now);
        let bucket = bucket.filter(|t| *t > now);
        global.max(bucket).map(|t| t - now)
    }

    /// Posts `d`. `bucket`: for Discord, the webhook's bucket state (its lock is held).
    async fn attempt(
        &mut self,
        dest: &Destination,
        d: Delivery,
        mut bucket: Option<&mut Option<Instant>>,
        marks: &mut VecDeque<JoinHandle<()>>,
    ) -> Step {
        let attempt = d.attempts + 1;
        // `max_age` counts from the first attempt, not from the time spent in the queue.
        let started = d.started_at.unwrap_or_else(now_ms);
        let (outcome, rate) = if dest.kind == Kind::Console {
            match serde_json::from_str(&d.body) {
                // `print!` would panic on a closed stdout (a pipe whose reader went away).
                Ok(body) => match write!(std::io::stdout().lock(), "{}", console::format(&body)) {
                    Ok(()) => (
                        Outcome::Done {
                            status: 200,
                            message_id: None,
                        },
                        None,
                    ),
                    Err(e) => (
                        Outcome::Retry {
                            status: None,
                            error: format!("cannot write to standard output: {e}"),
                        },
                        None,
                    ),
                },
                Err(e) => (
                    Outcome::Permanent {
                        status: 0,
                        error: format!("stored body is not JSON: {e}"),
                    },
                    None,
                ),
            }
        } else {
            client::post(&self.client, dest, &d.body).await
        };
        if let (Some(rate), Some(b)) = (rate, bucket.as_deref_mut()) {
            note_bucket(b, rate);
        }
        let now = now_ms();
        match outcome {
            Outcome::Done { status, message_id } => {
                let id = d.id;
                let store = self.store.clone();
                let name = self.name.clone();
                marks.push_back(tokio::spawn(mark_done(
                    store, name, id, status, message_id, now,
                )));
                let latency = (now - d.received_at).max(0) as f64 / 1000.0;
                metrics::counter!("printbell_deliveries_total", "destination" => self.name.clone(), "outcome" => "done").increment(1);
                metrics::histogram!("printbell_delivery_latency_seconds", "destination" => self.name.clone()).record(latency);
                tracing::info!(delivery = d.id.0, event = %d.event_id, generation = %d.generation_id, destination = %self.name, attempt, status, "delivered");
                return Step::Sent;
            }
            Outcome::RateLimited {
                status,
                wait,
                global,
            } => {
                let until = Instant::now() + wait;
                if global {
                    if let Ok(mut g) = self.global.lock() {
                        g.insert(host_of(dest), until);
                    }
                } else if let Some(b) = bucket {
                    *b = Some(until);
                }
                let max_age = self.live.get().config.delivery.max_age;
                if now - started >= max_age.as_millis() as i64 {
                    // Rate limits do not count as attempts, but they do not keep a delivery
                    // alive for ever either.
                    let why = format!(
                        "gave up: still rate limited after max_age ({})",
                        humantime::format_duration(max_age)
                    );
                    self.dead(&d, Some(status), why, false).await;
                    return Step::Changed;
                }
                let next = now + wait.as_millis() as i64;
                let note = format!("rate limited; waiting {:.3} s", wait.as_secs_f64());
                let wait_for = Reschedule {
                    status: Some(status),
                    error: note,
                    started_at: started,
                    next_attempt_at: next,
                };
                let _ = self.store.defer(d.id, wait_for, now).await;
                metrics::counter!("printbell_deliveries_total", "destination" => self.name.clone(), "outcome" => "rate_limited").increment(1);
                tracing::warn!(delivery = d.id.0, event = %d.event_id, destination = %self.name, wait_secs = wait.as_secs_f64(), global, "rate limited by the platform");
            }
            Outcome::Retry { status, error } => {
                let cfg = self.live.get().config.delivery.clone();
                match policy::after_failure(&cfg, attempt, started, now) {
                    AfterFailure::RetryAt(next) => {
                        let retry = Reschedule {
                            status,
                            error: error.clone(),
                            started_at: started,
                            next_attempt_at: next,
                        };
                        let _ = self.store.mark_retry(d.id, retry, now).await;
                        metrics::counter!("printbell_deliveries_total", "destination" => self.name.clone(), "outcome" => "retried").increment(1);
                        tracing::warn!(delivery = d.id.0, event = %d.event_id, generation = %d.generation_id, destination = %self.name, attempt, status, error = %error, retry_in_ms = next - now, "delivery failed; will retry");
                    }
                    AfterFailure::GiveUp(why) => {
                        self.dead(&d, status, format!("{why}; last error: {error}"), true)
                            .await;
                    }
                }
            }
            Outcome::Permanent { status, error } => {
                self.dead(&d, Some(status).filter(|s| *s != 0), error, true)
                    .await;
            }
        }
        Step::Changed
    }

    async fn dead(&self, d: &Delivery, status: Option<u16>, error: String, counted: bool) {
        let r = self
            .store
            .mark_dead(d.id, status, error.clone(), counted, now_ms())
            .await;
        if let Err(e) = r {
            tracing::error!(destination = %self.name, delivery = d.id.0, error = %e, "could not mark dead");
        }
        metrics::counter!("printbell_deliveries_total", "destination" => self.name.clone(), "outcome" => "dead").increment(1);
        tracing::error!(
            delivery = d.id.0,
            event = %d.event_id,
            generation = %d.generation_id,
            destination = %self.name,
            attempt = d.attempts + counted as u32,
            status = status.map(i64::from).unwrap_or(-1),
            error = %error,
            "delivery is dead; `printbell deliveries retry {}` sends it again",
            d.id
        );
    }
}

/// What became of the delivery a lane looked at.
enum Step {
    /// Posted and done; the lane goes on with its queue.
    Sent,
    /// Held back by the platform's pacing for a moment; it stays at the head.
    Paced(Box<Delivery>),
    /// Its next attempt is later: read the store again after the wait, which also picks up a
    /// `deliveries retry` of it.
    NotDue,
    /// Its state in the store changed otherwise (retry, rate limit, dead): re-read the queue.
    Changed,
}

/// Records a posted delivery as done, trying until the store takes it: while a mark is
/// missing the lane posts at most [`MAX_UNCONFIRMED`] more and reads nothing new, so a store
/// that fails for a while pauses the lane instead of sending its queue again.
async fn mark_done(
    store: Store,
    destination: String,
    id: DeliveryId,
    status: u16,
    message_id: Option<String>,
    now: i64,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let r = store.mark_done(id, status, message_id.clone(), now).await;
        match r {
            Ok(()) => return,
            Err(StoreError::Closed) => {
                tracing::error!(destination = %destination, delivery = id.0, "posted but the store closed before it was marked done; it will be sent again");
                return;
            }
            Err(e) => {
                tracing::error!(destination = %destination, delivery = id.0, error = %e, "posted but could not mark done yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Waits until every "done" mark sent so far is committed.
async fn settle(marks: &mut VecDeque<JoinHandle<()>>) {
    while let Some(mark) = marks.pop_front() {
        let _ = mark.await;
    }
}

/// Records Discord's bucket state: with nothing remaining, posts wait for the reset.
fn note_bucket(blocked_until: &mut Option<Instant>, rate: RateHeaders) {
    if let (Some(0), Some(reset)) = (rate.remaining, rate.reset_after) {
        *blocked_until = Some(Instant::now() + reset);
    }
}

/// Identifies a webhook across destinations: its kind and URL without query or fragment
/// (Discord's `thread_id` and `wait` do not make another webhook).
fn webhook_key(dest: &Destination) -> String {
    let url = dest.url.as_ref().map(|u| {
        let mut u = u.clone();
        u.set_query(None);
        u.set_fragment(None);
        u.to_string()
    });
    format!("{} {}", dest.kind.as_str(), url.unwrap_or_default())
}

fn host_of(dest: &Destination) -> String {
    dest.url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}
