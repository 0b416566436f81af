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
//!
//! With replicas sharing the store, only the holder of the destination's lease steps (see
//! `lease.rs`: checked before each step and, on this process's clock, before each post).

use super::coalesce::{self, Waiting};
use super::lease::{Hold, Lease, LEASE_POLL};
use super::pings::{self, SummaryClock};
use super::policy::{self, AfterFailure};
use crate::config::Destination;
use crate::domain::Mode;
use crate::loaded::Live;
use crate::platform::{self, Action, Outcome, Pacers};
use crate::shutdown::Shutdown;
use crate::store::{
    now_ms, Delivery, DeliveryId, DeliveryState, LiveMessage, PingGuard, Reschedule, Role, Store,
    StoreError,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
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
    pub shutdown: Shutdown,
    pub pacers: Arc<Pacers>,
    /// The destination's lease, among replicas sharing the store.
    pub lease: Lease,
    /// When the next summary of held-back pings is due (`mention_interval`).
    pub summaries: SummaryClock,
}

/// What a step sends: a delivery and how.
struct Planned {
    delivery: Delivery,
    send: Send,
    /// `mention_interval` holds this send's mentions back: it goes without them.
    quiet: bool,
}

/// How a delivery goes out.
enum Send {
    /// `each` mode: posted as stored.
    Each,
    /// Live: the generation's first message, with the route's mentions.
    Post,
    /// Live: posted anew (the old message was deleted), without mentions.
    Repost,
    /// Live: an edit of the generation's message.
    Edit { message: String },
    /// Live: a failure's separate ping, tied to the generation's message.
    Ping { message: String },
}

impl Planned {
    fn each(delivery: Delivery) -> Planned {
        Planned {
            delivery,
            send: Send::Each,
            quiet: false,
        }
    }

    /// The guard of this send's mentions, if it carries some under a `mention_interval` (a
    /// generation's first post, an `each` message, a failure's ping; never an edit).
    fn guarded_ping(&self) -> Option<&PingGuard> {
        let d = &self.delivery;
        let guard = d.guard.as_ref()?;
        match (&self.send, d.role) {
            (Send::Ping { .. }, _) => Some(guard),
            // Only with a body without mentions to send instead.
            (Send::Each | Send::Post, Role::Message) => d.quiet_body.as_ref().map(|_| guard),
            _ => None,
        }
    }

    fn action(&self) -> Action<'_> {
        match &self.send {
            Send::Each | Send::Post => Action::Post,
            Send::Repost => Action::Repost,
            Send::Edit { message } => Action::Edit { message },
            Send::Ping { message } => Action::Ping { message },
        }
    }

    /// The stored body this send uses: edits and re-posts never carry mentions.
    fn body(&self) -> &str {
        let d = &self.delivery;
        match self.send {
            Send::Each | Send::Post if self.quiet => d.quiet_body.as_deref().unwrap_or(&d.body),
            Send::Each | Send::Post | Send::Ping { .. } => &d.body,
            Send::Repost | Send::Edit { .. } => d.quiet_body.as_deref().unwrap_or(&d.body),
        }
    }

    /// Held back by pacing: an `each` delivery keeps its place at the head; a live plan is
    /// made again (more updates may have arrived meanwhile).
    fn paced(self) -> Step {
        match self.send {
            Send::Each => Step::Paced(Box::new(self.delivery)),
            _ => Step::Changed,
        }
    }
}

/// Whether the head of the queue can be sent now (the first phase of a step).
enum Prepared {
    /// To this destination, as configured now.
    Send(Box<Destination>),
    /// Not before its next attempt time.
    NotDue(Duration),
    /// Can never be sent (its destination was removed or changed kind): dead, not counted.
    Unsendable(String),
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
            if self.shutdown.is_started() {
                break;
            }
            // `mention_interval`: a summary that is due goes to the head of the lane.
            if self.summaries.due(now_ms()) && self.summarise().await {
                queue.clear();
            }
            let Some(delivery) = queue.pop_front() else {
                // The marks must be in before the store is asked what is still pending.
                settle(&mut marks).await;
                let name = self.name.clone();
                match self.store.heads(&name, limit).await {
                    Ok(heads) if heads.is_empty() => {
                        // Nothing to send, every mark is in: another replica may take over.
                        self.lease.release().await;
                        let wait = self.summaries.wait(now_ms(), POLL);
                        self.idle(wait).await;
                    }
                    Ok(heads) => queue = heads.into(),
                    Err(e) => {
                        tracing::warn!(destination = %self.name, error = %e, "cannot read the queue");
                        self.idle(POLL).await;
                    }
                }
                continue;
            };
            // One sender per destination across replicas: nothing of it is written or sent
            // without the lease (lease.rs).
            match self.lease.hold().await {
                Hold::Held => {}
                // Another replica may have sent part of what was read: read the store again.
                Hold::Taken => {
                    queue.clear();
                    self.summaries = SummaryClock::Unknown;
                    continue;
                }
                Hold::Elsewhere => {
                    queue.clear();
                    self.await_lease().await;
                    continue;
                }
            }
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
        self.lease.release().await;
    }

    /// Sends `delivery` if it is due and the platform's limits allow: prepare → call → record.
    async fn step(&mut self, delivery: Delivery, marks: &mut VecDeque<JoinHandle<()>>) -> Step {
        // Before any pacing lock is taken, so other lanes on the webhook never wait for the store.
        if marks.len() >= MAX_UNCONFIRMED {
            if let Some(oldest) = marks.pop_front() {
                let _ = oldest.await;
            }
        }
        let dest = match self.prepare(&delivery, now_ms()) {
            Prepared::Send(dest) => dest,
            Prepared::NotDue(wait) => {
                self.idle(wait.min(POLL)).await;
                return Step::NotDue;
            }
            Prepared::Unsendable(why) => {
                self.dead(&delivery, None, why, false).await;
                return Step::Changed;
            }
        };
        let planned = match (delivery.mode, delivery.role) {
            (Mode::Each, _) | (_, Role::Summary) => Planned::each(delivery),
            (Mode::Live, Role::Message) => match self.plan_update(delivery).await {
                Ok(p) => p,
                Err(step) => return step,
            },
            (Mode::Live, Role::Ping) => match self.plan_ping(delivery).await {
                Ok(p) => p,
                Err(step) => return step,
            },
        };
        let planned = match self.hold_back(planned).await {
            Ok(p) => p,
            Err(step) => return step,
        };
        let action = planned.action();
        let pacer = self.pacers.get(&dest);
        let permit = tokio::select! {
            p = pacer.acquire(&action) => p,
            _ = self.shutdown.started() => return planned.paced(),
        };
        let mut permit = match permit {
            Ok(permit) => permit,
            Err(wait) => {
                self.idle(wait.min(POLL)).await;
                return planned.paced();
            }
        };
        // The lease must outlast this post; judged on this process's clock, as the pacing
        // permit is held (no store call here). If not, the next step renews it first.
        if !self.lease.covers_post() {
            drop(permit);
            return planned.paced();
        }
        let d = &planned.delivery;
        // `max_age` counts from the first attempt, not from the time spent in the queue.
        let started = d.started_at.unwrap_or_else(now_ms);
        let answer = platform::of(dest.kind)
            .send(&self.client, &dest, &action, planned.body())
            .await;
        permit.record(&answer);
        drop(permit);
        let now = now_ms();
        if let (Outcome::Done { .. }, Some(guard), false) =
            (&answer.outcome, planned.guarded_ping(), planned.quiet)
        {
            self.pinged(guard, now).await;
        }
        match (&planned.send, answer.outcome) {
            (Send::Each, outcome) => self.record(d, outcome, started, now, marks).await,
            (_, Outcome::Done { status, message_id }) => {
                self.record_shown(&planned, action, status, message_id, now)
                    .await
            }
            (Send::Edit { .. }, Outcome::Gone { error, .. }) => {
                // Deleted in the channel: the update stays pending and is posted anew.
                tracing::warn!(delivery = d.id.0, generation = %d.generation_id, destination = %self.name, error = %error, "the live message was deleted; posting it anew");
                if let Err(e) = self
                    .store
                    .forget_message(&self.name, &d.generation_id, now)
                    .await
                {
                    tracing::error!(destination = %self.name, error = %e, "could not record a deleted live message");
                }
                Step::Changed
            }
            (_, outcome) => {
                self.record(d, outcome, started, now, marks).await;
                Step::Changed
            }
        }
    }

    /// Live mode: coalesces the waiting updates of the head's generation and picks what to
    /// send. `Err`: nothing to send now (all superseded, or the newest is not due yet).
    async fn plan_update(&mut self, head: Delivery) -> Result<Planned, Step> {
        let g = head.generation_id.clone();
        let read = async {
            let live = self.store.live_message(&self.name, &g).await?;
            let waiting = self.store.waiting_updates(&self.name, &g).await?;
            Ok::<_, StoreError>((live, waiting))
        };
        let (live, waiting) = match read.await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(destination = %self.name, error = %e, "cannot read a live message");
                self.idle(POLL).await;
                return Err(Step::Changed);
            }
        };
        let candidates: Vec<Waiting> = waiting
            .iter()
            .map(|d| Waiting {
                id: d.id.0,
                rank: d.rank(),
            })
            .collect();
        let plan = coalesce::plan(live.as_ref().map(|l| l.shown), &candidates);
        if !plan.supersede.is_empty() {
            let ids: Vec<DeliveryId> = plan.supersede.iter().map(|i| DeliveryId(*i)).collect();
            let why = match plan.send {
                Some(id) => format!("superseded by delivery {id} of the same generation"),
                None => "the message already shows a later state".to_string(),
            };
            let n = ids.len() as u64;
            if let Err(e) = self.store.supersede(ids, why, now_ms()).await {
                tracing::error!(destination = %self.name, error = %e, "could not mark updates superseded");
                self.idle(POLL).await;
                return Err(Step::Changed);
            }
            metrics::counter!("printbell_deliveries_total", "destination" => self.name.clone(), "outcome" => "superseded").increment(n);
            tracing::debug!(destination = %self.name, generation = %g, superseded = n, "coalesced live updates");
        }
        let Some(winner) = plan
            .send
            .and_then(|id| waiting.into_iter().find(|d| d.id.0 == id))
        else {
            return Err(Step::Changed);
        };
        let now = now_ms();
        if winner.next_attempt_at > now {
            let wait = Duration::from_millis((winner.next_attempt_at - now) as u64);
            self.idle(wait.min(POLL)).await;
            return Err(Step::NotDue);
        }
        let send = match live {
            None => Send::Post,
            Some(LiveMessage {
                message_ref: Some(message),
                ..
            }) => Send::Edit { message },
            Some(LiveMessage {
                message_ref: None, ..
            }) => Send::Repost,
        };
        Ok(Planned {
            delivery: winner,
            send,
            quiet: false,
        })
    }

    /// Live mode: a failure's ping is sent only if the failure edited a message that already
    /// existed (a generation's first post carries its mentions itself).
    async fn plan_ping(&mut self, ping: Delivery) -> Result<Planned, Step> {
        let read = async {
            let main = match ping.ping_for {
                Some(id) => self.store.delivery(id).await?,
                None => None,
            };
            let live = self
                .store
                .live_message(&self.name, &ping.generation_id)
                .await?;
            Ok::<_, StoreError>((main, live))
        };
        let (main, live) = match read.await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(destination = %self.name, error = %e, "cannot read a live message");
                self.idle(POLL).await;
                return Err(Step::Changed);
            }
        };
        let why = match (&main, &live) {
            (Some(m), _) if m.state == DeliveryState::Pending => {
                // Cannot happen in order (the failure is older); wait for it rather than guess.
                self.idle(POLL).await;
                return Err(Step::NotDue);
            }
            (Some(m), Some(l)) if m.state == DeliveryState::Done && l.first_post != m.id => {
                match &l.message_ref {
                    Some(message) => {
                        return Ok(Planned {
                            send: Send::Ping {
                                message: message.clone(),
                            },
                            delivery: ping,
                            quiet: false,
                        })
                    }
                    None => "the generation's message is gone",
                }
            }
            (Some(m), _) if m.state == DeliveryState::Done => {
                "the failure was the generation's first post, which pinged"
            }
            _ => "the failure was never shown",
        };
        if let Err(e) = self
            .store
            .supersede(vec![ping.id], why.to_string(), now_ms())
            .await
        {
            tracing::error!(destination = %self.name, error = %e, "could not mark a ping superseded");
            self.idle(POLL).await;
        }
        Err(Step::Changed)
    }

    /// A live post, edit or ping the platform took: recorded durably before anything else of
    /// this destination is sent, so no edit ever goes out for a message id not on disk.
    async fn record_shown(
        &mut self,
        planned: &Planned,
        action: Action<'_>,
        status: u16,
        message_id: Option<String>,
        now: i64,
    ) -> Step {
        let d = &planned.delivery;
        // Kept trying until the store takes it (as the `each` marks are): the lane sends
        // nothing else meanwhile, so a store that fails for a while pauses the destination
        // instead of sending this again.
        let store = &self.store;
        let write = || async {
            match &planned.send {
                Send::Ping { .. } => store.mark_done(d.id, status, message_id.clone(), now).await,
                Send::Edit { message } => {
                    let shown = Some(message.clone());
                    store.mark_shown(d.id, status, shown, false, now).await
                }
                Send::Post | Send::Repost => {
                    let first = matches!(planned.send, Send::Post);
                    store
                        .mark_shown(d.id, status, message_id.clone(), first, now)
                        .await
                }
                Send::Each => Ok(()),
            }
        };
        let failed = |e: &StoreError| {
            tracing::error!(delivery = d.id.0, destination = %self.name, error = %e, "sent but could not record it yet; trying again");
        };
        if !until_written(write, failed).await {
            tracing::error!(delivery = d.id.0, destination = %self.name, "sent but the store closed before it was recorded; it will be sent again");
            return Step::Changed;
        }
        let latency = (now - d.received_at).max(0) as f64 / 1000.0;
        metrics::counter!("printbell_deliveries_total", "destination" => self.name.clone(), "outcome" => "done").increment(1);
        metrics::counter!("printbell_messages_total", "destination" => self.name.clone(), "action" => action.label()).increment(1);
        metrics::histogram!("printbell_delivery_latency_seconds", "destination" => self.name.clone()).record(latency);
        tracing::info!(delivery = d.id.0, event = %d.event_id, event_type = %d.event_type, generation = %d.generation_id, destination = %self.name, attempt = d.attempts + 1, action = action.label(), status, "delivered");
        Step::Changed
    }

    /// `mention_interval` (see `pings.rs`): a send that would ping while an interval is open
    /// is recorded as held back (durably, before anything is sent) and goes without its
    /// mentions; a failure's separate ping is superseded instead. `Err`: nothing to send now.
    async fn hold_back(&mut self, mut planned: Planned) -> Result<Planned, Step> {
        let Some(guard) = planned.guarded_ping().cloned() else {
            return Ok(planned);
        };
        let now = now_ms();
        let until = match self.store.ping_window(&self.name, &guard.key).await {
            Ok(Some(until)) if until > now => until,
            Ok(_) => return Ok(planned),
            Err(e) => {
                tracing::warn!(destination = %self.name, error = %e, "cannot read the ping interval");
                self.idle(POLL).await;
                return Err(Step::Changed);
            }
        };
        let d = &planned.delivery;
        if let Err(e) = self
            .store
            .hold_ping(&self.name, d.id, d.event_type, &guard, now)
            .await
        {
            tracing::warn!(destination = %self.name, error = %e, "cannot hold a ping back");
            self.idle(POLL).await;
            return Err(Step::Changed);
        }
        self.summaries = self.summaries.held_until(until);
        metrics::counter!("printbell_pings_total", "destination" => self.name.clone(), "outcome" => "held").increment(1);
        tracing::info!(delivery = d.id.0, generation = %d.generation_id, destination = %self.name, summary_in_ms = until - now, "ping held back by mention_interval; the summary will name it");
        if matches!(planned.send, Send::Ping { .. }) {
            let why = "its ping was held back by mention_interval; the summary names it";
            if let Err(e) = self.store.supersede(vec![d.id], why.into(), now).await {
                tracing::error!(destination = %self.name, error = %e, "could not mark a ping superseded");
                self.idle(POLL).await;
            }
            return Err(Step::Changed);
        }
        planned.quiet = true;
        Ok(planned)
    }

    /// A message carrying a guarded ping was taken by the platform: pings of its key are held
    /// back for one interval from now. Kept trying until the store takes it (the lane sends
    /// nothing else meanwhile), so the next message cannot ping too.
    async fn pinged(&mut self, guard: &PingGuard, now: i64) {
        metrics::counter!("printbell_pings_total", "destination" => self.name.clone(), "outcome" => "sent").increment(1);
        let until = now.saturating_add(guard.every_ms);
        let (store, name) = (&self.store, self.name.as_str());
        let write = || store.open_ping_window(name, &guard.key, until, guard.every_ms, now);
        let failed = |e: &StoreError| {
            tracing::error!(destination = %name, error = %e, "pinged but could not start the ping interval yet; trying again");
        };
        until_written(write, failed).await;
    }

    /// Stores the summaries of every interval that ended with pings held back, if this lane
    /// holds the destination's lease. Returns whether the lane's queue must be read again: a
    /// summary was stored (it goes first), or the lease was taken anew (another replica may
    /// have sent part of what was read).
    async fn summarise(&mut self) -> bool {
        let taken = match self.lease.hold().await {
            Hold::Held => false,
            Hold::Taken => {
                self.summaries = SummaryClock::Unknown;
                true
            }
            // The holder sends them; asked again at the next turn of the loop.
            Hold::Elsewhere => return false,
        };
        let held = match self.store.held_pings(&self.name).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(destination = %self.name, error = %e, "cannot read the held-back pings");
                self.summaries = SummaryClock::At(now_ms() + POLL.as_millis() as i64);
                return taken;
            }
        };
        let now = now_ms();
        let (due, clock) = pings::due(&held, now);
        self.summaries = clock;
        let loaded = self.live.get();
        let Some(dest) = loaded.config.destinations.get(&self.name) else {
            return taken;
        };
        let mut stored = taken;
        for h in due {
            let summary = pings::summary_delivery(dest, h);
            let until = now.saturating_add(h.every_ms);
            match self.store.queue_summary(&h.key, summary, until, now).await {
                Ok(id) => {
                    stored = true;
                    tracing::info!(delivery = id.0, destination = %self.name, held = h.count, "pings were held back by mention_interval; summary queued");
                }
                Err(e) => {
                    tracing::warn!(destination = %self.name, error = %e, "cannot store the summary of held-back pings; trying again shortly");
                    self.summaries = SummaryClock::At(now + POLL.as_millis() as i64);
                }
            }
        }
        stored
    }

    /// Whether `d` can be sent now, by the config in force at `now`.
    fn prepare(&self, d: &Delivery, now: i64) -> Prepared {
        let loaded = self.live.get();
        let Some(dest) = loaded.config.destinations.get(&self.name) else {
            return Prepared::Unsendable("destination removed from config".into());
        };
        if dest.kind != d.kind {
            return Prepared::Unsendable(format!(
                "destination is now a {} destination but the message was rendered for {}",
                dest.kind, d.kind
            ));
        }
        if d.next_attempt_at > now {
            return Prepared::NotDue(Duration::from_millis((d.next_attempt_at - now) as u64));
        }
        Prepared::Send(Box::new(dest.clone()))
    }

    /// Waits [`LEASE_POLL`] (or until shutdown begins) before asking again for a lease held
    /// by another replica. New work announced meanwhile does not cut the wait short: the
    /// holder reads the shared queue and sends it, and asking with every event stored was
    /// most of the lease traffic (BENCHMARKS.md).
    async fn await_lease(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep(LEASE_POLL) => {}
            _ = self.shutdown.started() => {}
        }
    }

    /// Sleeps until `d` passes, new work is announced, or shutdown begins.
    async fn idle(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.notify.notified() => {}
            _ = self.shutdown.started() => {}
        }
    }

    /// Writes what became of an attempt of `d` (the last phase of a step). `started`: when
    /// its series of attempts began.
    async fn record(
        &mut self,
        d: &Delivery,
        outcome: Outcome,
        started: i64,
        now: i64,
        marks: &mut VecDeque<JoinHandle<()>>,
    ) -> Step {
        let attempt = d.attempts + 1;
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
                metrics::counter!("printbell_messages_total", "destination" => self.name.clone(), "action" => "posted").increment(1);
                metrics::histogram!("printbell_delivery_latency_seconds", "destination" => self.name.clone()).record(latency);
                if d.role == Role::Summary {
                    metrics::counter!("printbell_pings_total", "destination" => self.name.clone(), "outcome" => "summarised").increment(1);
                    tracing::info!(delivery = d.id.0, destination = %self.name, attempt, status, "summary of held-back pings delivered");
                } else {
                    tracing::info!(delivery = d.id.0, event = %d.event_id, generation = %d.generation_id, destination = %self.name, attempt, status, "delivered");
                }
                return Step::Sent;
            }
            Outcome::RateLimited {
                status,
                wait,
                global,
            } => {
                let max_age = self.live.get().config.delivery.max_age;
                if now - started >= max_age.as_millis() as i64 {
                    // Rate limits do not count as attempts, but they do not keep a delivery
                    // alive for ever either.
                    let why = format!(
                        "gave up: still rate limited after max_age ({})",
                        humantime::format_duration(max_age)
                    );
                    self.dead(d, Some(status), why, false).await;
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
                        self.dead(d, status, format!("{why}; last error: {error}"), true)
                            .await;
                    }
                }
            }
            Outcome::Permanent { status, error } => {
                self.dead(d, status, error, true).await;
            }
            Outcome::Gone { status, error } => {
                self.dead(d, Some(status), error, true).await;
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
        // The hint names the config this service runs with, absolute: run from another
        // directory without it, `deliveries retry` would open another store.
        let file = self.live.get().config.file.clone();
        let config = std::fs::canonicalize(&file).unwrap_or(file);
        tracing::error!(
            delivery = d.id.0,
            event = %d.event_id,
            generation = %d.generation_id,
            destination = %self.name,
            attempt = d.attempts + counted as u32,
            status = status.map(i64::from).unwrap_or(-1),
            error = %error,
            "delivery is dead; `printbell --config {} deliveries retry {}` sends it again",
            config.display(),
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
    let write = || store.mark_done(id, status, message_id.clone(), now);
    let failed = |e: &StoreError| {
        tracing::error!(destination = %destination, delivery = id.0, error = %e, "posted but could not mark done yet; trying again");
    };
    if !until_written(write, failed).await {
        tracing::error!(destination = %destination, delivery = id.0, "posted but the store closed before it was marked done; it will be sent again");
    }
}

/// Runs the store write `write` until it commits, telling `failed` of each failure and pausing
/// after it (100 ms, doubling, at most 5 s): a store that fails for a while pauses the lane
/// instead of losing the write. `false` when the store closed.
async fn until_written<F, Fut>(mut write: F, failed: impl Fn(&StoreError)) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(StoreError::Closed) => return false,
            Err(e) => {
                failed(&e);
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

#[cfg(test)]
mod tests {
    //! One phase of a step at a time, on a real store, with no clock to wait for.
    use super::*;
    use crate::domain::{EventType, Kind};
    use crate::loaded::Loaded;
    use crate::shutdown::Trigger;
    use crate::store::{Accepted, Backend, NewDelivery};

    async fn lane(config: &str) -> (Lane, Trigger, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = Backend::Sqlite {
            path: dir.path().join("s.db"),
        };
        let store = crate::store::open(&backend).await.expect("store");
        let config = crate::config::parse(std::path::Path::new("t.toml"), config, &|_| None)
            .expect("config");
        let trigger = Trigger::new();
        let lane = Lane {
            name: "d".into(),
            lease: Lease::new(
                store.clone(),
                "d",
                super::super::lease::owner_id(),
                Duration::from_secs(10),
            ),
            store,
            live: Live::new(Loaded::from_config(config).expect("loaded")),
            client: reqwest::Client::new(),
            notify: Arc::default(),
            shutdown: trigger.subscribe(),
            pacers: Arc::default(),
            summaries: SummaryClock::Unknown,
        };
        (lane, trigger, dir)
    }

    const DISCORD: &str = "[destinations.d]\nkind = \"discord\"\nmode = \"each\"\nurl = \"http://127.0.0.1:9/api/webhooks/1/t\"\n";

    async fn one(lane: &Lane, kind: Kind) -> Delivery {
        let new = NewDelivery::each(EventType::Failed, "g1", "d", kind, "{}".into());
        let Ok(Accepted::New(_)) = lane.store.accept("e1", vec![new], 1_000).await else {
            panic!("accepted");
        };
        lane.store.heads("d", 1).await.expect("heads").remove(0)
    }

    #[tokio::test]
    async fn prepare_tells_due_not_due_and_unsendable() {
        let (lane, _t, _dir) = lane(DISCORD).await;
        let d = one(&lane, Kind::Discord).await;
        assert!(matches!(lane.prepare(&d, 1_000), Prepared::Send(_)));
        let later = Delivery {
            next_attempt_at: 5_000,
            ..d.clone()
        };
        assert!(
            matches!(lane.prepare(&later, 1_000), Prepared::NotDue(w) if w == Duration::from_secs(4))
        );
        let slack = Delivery {
            kind: Kind::Slack,
            ..d
        };
        assert!(
            matches!(lane.prepare(&slack, 1_000), Prepared::Unsendable(ref why) if why.contains("now a discord destination"))
        );
    }

    #[tokio::test]
    async fn record_writes_each_outcome_to_the_store() {
        let (mut lane, _t, _dir) = lane(DISCORD).await;
        let d = one(&lane, Kind::Discord).await;
        let mut marks = VecDeque::new();
        let now = now_ms();
        let retry = Outcome::Retry {
            status: Some(502),
            error: "bad gateway".into(),
        };
        assert!(matches!(
            lane.record(&d, retry, now, now, &mut marks).await,
            Step::Changed
        ));
        let after = lane.store.heads("d", 1).await.expect("heads").remove(0);
        assert_eq!(after.attempts, 1);
        assert_eq!(after.last_status, Some(502));
        assert!(after.next_attempt_at >= now + 1_000, "backoff of about 1 s");

        let limited = Outcome::RateLimited {
            status: 429,
            wait: Duration::from_millis(1500),
            global: false,
        };
        lane.record(&after, limited, now, now, &mut marks).await;
        let after = lane.store.heads("d", 1).await.expect("heads").remove(0);
        assert_eq!(after.attempts, 1, "a rate limit is not an attempt");
        assert_eq!(after.next_attempt_at, now + 1_500);

        let done = Outcome::Done {
            status: 200,
            message_id: Some("123".into()),
        };
        assert!(matches!(
            lane.record(&after, done, now, now, &mut marks).await,
            Step::Sent
        ));
        settle(&mut marks).await;
        let row = lane.store.delivery(after.id).await.expect("read");
        let row = row.expect("row");
        assert_eq!(row.state, DeliveryState::Done);
        assert_eq!(row.message_id.as_deref(), Some("123"));
    }
}
