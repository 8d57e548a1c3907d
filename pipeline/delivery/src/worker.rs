//! The delivery worker: passes over the outbox, sending each due row to the enterprise's
//! current contact, and deciding from the answer what happens next — delivered; retried on the
//! same contact after the configured wait with jitter; or, after the contact's last attempt (or
//! a final answer), the next contact in priority order; after the last contact, failed and on
//! the manual-service list.
//!
//! Invariants: recipients come from [`Directory::contacts_of`] for the row's own enterprise
//! only; every attempt is recorded with its masked recipient before the worker moves on; a row
//! is leased while it is sent, so a worker killed in the middle of an attempt leaves the row to
//! be retried by the next worker after the lease (the receiver dedupes on the idempotency key);
//! per-channel rate limits space the sends. Up to `max_in_flight` sends run at once, at most
//! `per_host` to one host, so one slow receiver holds up only the rows behind it on its host;
//! each is recorded as soon as its answer is in.

use std::collections::{HashMap, VecDeque};

use futures::StreamExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use super::channels::{Outcome, Sender};
use super::config::DeliveryConfig;
use super::mask;
use super::outbox::{self, Attempt, Due, Step};
use crate::error::Result;
use crate::metrics::{self, DeliveryMetrics};
use pharmwatch_casework::links::Signer;
use pharmwatch_core::contacts::{Channel, Directory};
use pharmwatch_core::store::Store;

/// Counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerSummary {
    /// Passes over the outbox.
    pub passes: u64,
    /// Send attempts.
    pub attempts: u64,
    /// Deliveries delivered.
    pub delivered: u64,
    /// Attempts to be retried on the same contact.
    pub retries: u64,
    /// Contacts given up (final answer or last attempt), falling back to the next.
    pub contacts_failed: u64,
    /// Deliveries failed on every contact (manual-service list).
    pub failed: u64,
}

impl WorkerSummary {
    fn add(&mut self, o: &WorkerSummary) {
        self.passes += o.passes;
        self.attempts += o.attempts;
        self.delivered += o.delivered;
        self.retries += o.retries;
        self.contacts_failed += o.contacts_failed;
        self.failed += o.failed;
    }
}

/// The worker over one store.
pub struct Worker {
    cfg: DeliveryConfig,
    store: Store,
    directory: Directory,
    sender: Arc<Sender>,
    signer: Signer,
    rng: Xoshiro256PlusPlus,
    metrics: &'static DeliveryMetrics,
    next_slot: HashMap<Channel, Instant>,
    quiet: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("store", &self.store.path())
            .field("enterprises", &self.directory.enterprises())
            .finish()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The wait before retry number `n` (1-based) of one contact, milliseconds: the `n`-th of
/// `delays` (seconds) scaled by a uniform factor in [1 − jitter, 1 + jitter].
pub fn retry_wait_ms(delays: &[f64], jitter: f64, n: usize, rng: &mut impl Rng) -> i64 {
    let base = delays.get(n.saturating_sub(1)).copied().unwrap_or(0.0);
    let factor = if jitter > 0.0 {
        1.0 + jitter * rng.gen_range(-1.0..=1.0)
    } else {
        1.0
    };
    (base * factor * 1000.0).round() as i64
}

/// A row ready to be sent: what [`Worker::prepare`] found.
struct Prepared {
    contact: pharmwatch_core::contacts::Contact,
    msg: super::channels::Message,
    /// The masked recipient, as logged and stored.
    recipient: String,
    /// The notice number or the risk warning, for the log.
    what: String,
    /// Whether the contact is the enterprise's last.
    last_contact: bool,
}

/// The span of a row's lines: delivery id, notice id, case id, enterprise.
fn delivery_span(d: &Due) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        delivery_id = d.delivery_id,
        notice_id = %d.key,
        case_id = d.case_id.as_deref().unwrap_or("-"),
        enterprise = %d.enterprise_id,
    )
}

/// Logs a row left leased for a later pass.
fn left_for_later(span: &tracing::Span, e: &crate::error::DeliveryError) {
    span.in_scope(|| {
        tracing::warn!(
            error = %mask::text(&e.to_string()),
            "left for a later pass"
        )
    });
}

impl Worker {
    /// A worker on the store file `store_path` with the contacts, secrets and link key of
    /// `cfg` (the key from the environment).
    pub fn new(cfg: &DeliveryConfig, store_path: &Path) -> Result<Self> {
        Self::with_signer(cfg, store_path, cfg.signer()?)
    }

    /// A worker with a given link signer.
    pub fn with_signer(cfg: &DeliveryConfig, store_path: &Path, signer: Signer) -> Result<Self> {
        cfg.validate()?;
        let directory = Directory::load(&cfg.contacts)?;
        let rng = match cfg.jitter_seed {
            Some(s) => Xoshiro256PlusPlus::seed_from_u64(s),
            None => Xoshiro256PlusPlus::from_entropy(),
        };
        // The warning policy of this configuration is the one in force from now on: the
        // stream's outbox trigger reads it from the store.
        let mut store = Store::open(store_path)?;
        cfg.warnings.apply(&mut store)?;
        Ok(Self {
            sender: Arc::new(Sender::new(cfg)?),
            store,
            directory,
            signer,
            rng,
            metrics: metrics::delivery(),
            next_slot: HashMap::new(),
            cfg: cfg.clone(),
            quiet: false,
        })
    }

    /// The contacts whose secret cannot be resolved now (unset environment variable, key
    /// missing from the secrets file), one line each naming the enterprise, the channel, the
    /// masked address and the reference — found at start-up rather than at the first send,
    /// where each would fail its contact for good.
    pub fn unresolved_secrets(&self) -> Vec<String> {
        self.directory
            .all()
            .filter_map(|c| {
                let r = c.secret_ref.as_deref()?;
                (!self.sender.resolves(r)).then(|| {
                    format!(
                        "{} contact {} ({} {}): secret {r} is not set (environment or secrets \
                         file {})",
                        c.enterprise_id,
                        c.priority,
                        c.channel.as_str(),
                        mask::recipient(c.channel, &c.address),
                        self.cfg
                            .secrets_file
                            .as_deref()
                            .map_or("none configured".to_string(), |p| p.display().to_string())
                    )
                })
            })
            .collect()
    }

    /// Refuses to start with contacts whose secrets are missing, listing them.
    pub fn check_secrets(&self) -> Result<()> {
        let missing = self.unresolved_secrets();
        if missing.is_empty() {
            return Ok(());
        }
        Err(pharmwatch_core::error::CoreError::Config(format!(
            "{} contact(s) cannot be sent to, their secrets are missing:\n  {}",
            missing.len(),
            missing.join("\n  ")
        ))
        .into())
    }

    /// No per-attempt lines on stderr.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The wait before retry number `n` (1-based) with jitter.
    fn delay_ms(&mut self, n: usize) -> i64 {
        retry_wait_ms(
            &self.cfg.retry_delays_secs,
            self.cfg.jitter,
            n,
            &mut self.rng,
        )
    }

    async fn pace(&mut self, channel: Channel) {
        let spacing = self.cfg.rate_limits.spacing(channel);
        let now = Instant::now();
        let slot = self
            .next_slot
            .get(&channel)
            .copied()
            .unwrap_or(now)
            .max(now);
        if slot > now {
            tokio::time::sleep(slot - now).await;
        }
        self.next_slot.insert(channel, slot + spacing);
    }

    /// An outcome worth an operator's journal (a delivery, a retry scheduled), inside the
    /// delivery's span (delivery id, notice id, case id, enterprise).
    fn log(&self, line: String) {
        if !self.quiet {
            tracing::info!("{line}");
        }
    }

    /// A delivery that failed for good on a contact or altogether.
    fn log_failure(&self, line: String) {
        if !self.quiet {
            tracing::warn!("{line}");
        }
    }

    /// One pass: takes the due rows and sends each once.
    pub async fn pass(&mut self) -> Result<WorkerSummary> {
        self.pass_until(&AtomicBool::new(false)).await
    }

    /// One pass that starts no new send once `stop` is set: the sends in flight are finished
    /// and recorded, the rows not yet attempted are given back (their leases released) for the
    /// next start or another worker.
    pub async fn pass_until(&mut self, stop: &AtomicBool) -> Result<WorkerSummary> {
        let lease_ms = (self.cfg.lease_secs * 1000.0) as i64;
        let due = outbox::claim_due(
            &mut self.store,
            now_ms(),
            lease_ms,
            self.cfg.risk_warnings,
            self.cfg.batch_size,
        )?;
        pharmwatch_core::faults::point("delivery.after_lease");
        let mut s = WorkerSummary {
            passes: 1,
            ..Default::default()
        };
        // Each row's host, for the per-host limit (the contact a row is at does not change
        // during the pass).
        let hosts: Vec<String> = due.iter().map(|d| self.host_of(d)).collect();
        let mut waiting: VecDeque<usize> = (0..due.len()).collect();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut per_host: HashMap<String, usize> = HashMap::new();
        loop {
            // Start what the limits allow, in the outbox's order, skipping rows whose host is
            // at its limit (they wait for one of its sends to end).
            while !stop.load(Ordering::SeqCst) && in_flight.len() < self.cfg.max_in_flight {
                let Some(pos) = waiting.iter().position(|i| {
                    per_host.get(&hosts[*i]).copied().unwrap_or(0) < self.cfg.per_host
                }) else {
                    break;
                };
                let Some(i) = waiting.remove(pos) else {
                    break;
                };
                let d = &due[i];
                let span = delivery_span(d);
                // A row that cannot be sent (its message cannot be built, the store refused
                // the record) stays leased until `lease_secs` and is tried again then.
                match self.prepare(d, &mut s).instrument(span.clone()).await {
                    Ok(Some(p)) => {
                        *per_host.entry(hosts[i].clone()).or_default() += 1;
                        let sender = self.sender.clone();
                        in_flight.push(
                            async move {
                                let started_at = chrono::Utc::now().to_rfc3339();
                                let t0 = Instant::now();
                                let outcome = sender.send(&p.contact, &p.msg).await;
                                pharmwatch_core::faults::point("delivery.after_send");
                                let took = t0.elapsed();
                                (i, p, outcome, started_at, took)
                            }
                            .instrument(span),
                        );
                    }
                    Ok(None) => {}
                    Err(e) => left_for_later(&span, &e),
                }
            }
            let Some((i, p, outcome, started_at, took)) = in_flight.next().await else {
                break;
            };
            if let Some(n) = per_host.get_mut(&hosts[i]) {
                *n -= 1;
            }
            let d = &due[i];
            let span = delivery_span(d);
            let done = span.in_scope(|| self.finish(d, p, &outcome, started_at, took, &mut s));
            if let Err(e) = done {
                left_for_later(&span, &e);
            }
        }
        if !waiting.is_empty() {
            let left: Vec<Due> = waiting.iter().map(|i| due[*i].clone()).collect();
            outbox::release(&mut self.store, &left)?;
            if !self.quiet {
                tracing::info!(
                    released = left.len(),
                    "stopping: the rows not yet sent are given back"
                );
            }
        }
        self.update_pending()?;
        Ok(s)
    }

    /// The host a row's current contact is sent to (`host:port`; the SMTP relay for e-mail),
    /// for the per-host limit.
    fn host_of(&self, d: &Due) -> String {
        match self
            .directory
            .contacts_of(&d.enterprise_id)
            .get(d.contact_index)
        {
            Some(c) if c.channel == Channel::Email => {
                format!("smtp:{}:{}", self.cfg.smtp.host, self.cfg.smtp.port)
            }
            Some(c) => url::Url::parse(&c.address)
                .ok()
                .map(|u| {
                    format!(
                        "{}:{}",
                        u.host_str().unwrap_or_default(),
                        u.port_or_known_default().unwrap_or(0)
                    )
                })
                .unwrap_or_default(),
            None => "manual".to_string(),
        }
    }

    /// Everything before a row's send: its current contact (a row with none left goes to the
    /// manual-service list here: `None`), its message with fresh links, the channel's pace.
    async fn prepare(&mut self, d: &Due, s: &mut WorkerSummary) -> Result<Option<Prepared>> {
        let what = d.document_no.clone().unwrap_or_else(|| {
            format!("risk warning {}", d.risk_event_id.as_deref().unwrap_or(""))
        });
        let contacts = self.directory.contacts_of(&d.enterprise_id).to_vec();
        let Some(contact) = contacts.get(d.contact_index).cloned() else {
            // No (more) registered contact: straight to the manual-service list.
            let detail = if contacts.is_empty() {
                "no registered contact".to_string()
            } else {
                "no registered contact left".to_string()
            };
            let a = Attempt {
                channel: "manual",
                recipient: "-",
                started_at: chrono::Utc::now().to_rfc3339(),
                duration_ms: 0,
                outcome: "final_failure",
                detail: &detail,
            };
            if outbox::record(&mut self.store, d, &a, &Step::Failed)? {
                s.failed += 1;
                self.log(format!(
                    "{what} for {}: {detail}; on the manual-service list ({})",
                    d.enterprise_id, self.cfg.manual_service
                ));
            }
            return Ok(None);
        };
        if contact.enterprise_id != d.enterprise_id {
            return Err(pharmwatch_core::error::CoreError::Internal(format!(
                "the directory returned a contact of {} for {}",
                contact.enterprise_id, d.enterprise_id
            ))
            .into());
        }
        let path = self.store.path().to_path_buf();
        let msg = outbox::message_of(self.store.conn_ref(), &path, d, &self.signer)?;
        self.pace(contact.channel).await;
        Ok(Some(Prepared {
            recipient: mask::recipient(contact.channel, &contact.address),
            what,
            last_contact: d.contact_index + 1 >= contacts.len(),
            contact,
            msg,
        }))
    }

    /// Everything after a row's send: what the answer means (delivered, retry, next contact,
    /// failed), recorded with the attempt, counted and logged.
    fn finish(
        &mut self,
        d: &Due,
        p: Prepared,
        outcome: &Outcome,
        started_at: String,
        took: Duration,
        s: &mut WorkerSummary,
    ) -> Result<()> {
        let Prepared {
            contact,
            recipient,
            what,
            last_contact,
            ..
        } = p;
        let channel = contact.channel;
        let m = self.metrics;
        m.attempt_seconds
            .with_label_values(&[channel.as_str()])
            .observe(took.as_secs_f64());
        s.attempts += 1;
        let attempt_no = d.attempts as usize + 1;
        let per_contact = self.cfg.attempts_per_contact() as usize;
        let (step, label) = match outcome {
            Outcome::Success(_) => (Step::Delivered, "success"),
            Outcome::Retry(_) if attempt_no < per_contact => {
                (Step::RetryAt(now_ms() + self.delay_ms(attempt_no)), "retry")
            }
            _ if last_contact => (Step::Failed, "final_failure"),
            _ => (Step::NextContact, "final_failure"),
        };
        let a = Attempt {
            channel: channel.as_str(),
            recipient: &recipient,
            started_at,
            duration_ms: took.as_millis() as i64,
            outcome: label,
            detail: outcome.detail(),
        };
        pharmwatch_core::faults::point("delivery.before_record");
        let current = outbox::record(&mut self.store, d, &a, &step)?;
        m.attempts
            .with_label_values(&[channel.as_str(), label])
            .inc();
        let who = format!("{} via {} {recipient}", d.enterprise_id, channel.as_str());
        match &step {
            Step::Delivered => {
                m.delivered.with_label_values(&[channel.as_str()]).inc();
                s.delivered += 1;
                self.log(format!("{what} → {who}: delivered ({})", outcome.detail()));
            }
            Step::RetryAt(at) => {
                s.retries += 1;
                self.log(format!(
                    "{what} → {who}: attempt {attempt_no}/{per_contact} failed ({}); retry in {:.1} s",
                    outcome.detail(),
                    (*at - now_ms()).max(0) as f64 / 1000.0
                ));
            }
            Step::NextContact | Step::Failed => {
                m.failed.with_label_values(&[channel.as_str()]).inc();
                s.contacts_failed += 1;
                if step == Step::Failed {
                    s.failed += 1;
                    self.log_failure(format!(
                        "{what} → {who}: failed for good ({}); every contact failed, on the \
                         manual-service list ({})",
                        outcome.detail(),
                        self.cfg.manual_service
                    ));
                } else {
                    self.log_failure(format!(
                        "{what} → {who}: failed for good ({}); falling back to the next contact",
                        outcome.detail()
                    ));
                }
            }
        }
        if !current {
            self.log(format!(
                "{what}: the lease ran out during the attempt; the row's newer owner decides"
            ));
        }
        Ok(())
    }

    /// Sets the pending gauge per channel (the current contact's channel; `manual` for the
    /// failed deliveries waiting for manual service).
    fn update_pending(&self) -> Result<()> {
        let mut by: HashMap<&'static str, i64> = HashMap::new();
        for (enterprise, idx, n) in outbox::pending_by_contact(&self.store)? {
            let ch = self
                .directory
                .contacts_of(&enterprise)
                .get(idx)
                .map_or("manual", |c| c.channel.as_str());
            *by.entry(ch).or_default() += n;
        }
        *by.entry("manual").or_default() +=
            pharmwatch_casework::service::manual_list(&self.store)?.len() as i64;
        for ch in ["webhook", "dingtalk", "wecom", "email", "manual"] {
            self.metrics
                .pending
                .with_label_values(&[ch])
                .set(by.get(ch).copied().unwrap_or(0));
        }
        Ok(())
    }

    /// Runs passes until `stop` is set; with `once`, one pass over what is due now.
    pub async fn run(&mut self, stop: Arc<AtomicBool>, once: bool) -> Result<WorkerSummary> {
        let mut total = WorkerSummary::default();
        loop {
            let s = match self.pass_until(&stop).await {
                Ok(s) => s,
                // A continuous worker outlives a busy or briefly unavailable store.
                Err(e) if !once => {
                    tracing::warn!(
                        error = %mask::text(&e.to_string()),
                        "pass failed; retrying after the poll interval"
                    );
                    WorkerSummary::default()
                }
                Err(e) => return Err(e),
            };
            let busy = s.attempts + s.failed >= self.cfg.batch_size as u64;
            total.add(&s);
            if once || stop.load(Ordering::SeqCst) {
                break;
            }
            if !busy {
                let until = Instant::now() + Duration::from_millis(self.cfg.poll_interval_ms);
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        Ok(total)
    }

    /// What would be sent now, one line per due row, recipients masked; nothing is sent or
    /// written.
    pub fn dry_run(&self) -> Result<String> {
        let due = outbox::due_now(
            &self.store,
            now_ms(),
            self.cfg.risk_warnings,
            usize::MAX >> 1,
        )?;
        let mut out = String::new();
        for line in self.unresolved_secrets() {
            out.push_str(&format!("PROBLEM {line}\n"));
        }
        let path = self.store.path().to_path_buf();
        for d in &due {
            let contacts = self.directory.contacts_of(&d.enterprise_id);
            let what = d.document_no.clone().unwrap_or_else(|| {
                format!("risk warning {}", d.risk_event_id.as_deref().unwrap_or(""))
            });
            let to = match contacts.get(d.contact_index) {
                Some(c) => format!(
                    "{} {} (lead {}; attempt {} of {} on contact {} of {})",
                    c.channel.as_str(),
                    mask::recipient(c.channel, &c.address),
                    c.lead_name,
                    d.attempts + 1,
                    self.cfg.attempts_per_contact(),
                    d.contact_index + 1,
                    contacts.len()
                ),
                None => format!(
                    "no registered contact → manual service ({})",
                    self.cfg.manual_service
                ),
            };
            let title = outbox::message_of(self.store.conn_ref(), &path, d, &self.signer)
                .map(|m| m.title())
                .unwrap_or_default();
            out.push_str(&format!(
                "#{:<5} {} {what} → {} {to}\n        {title}\n",
                d.delivery_id, d.kind, d.enterprise_id
            ));
        }
        let pending: i64 = outbox::pending_by_contact(&self.store)?
            .iter()
            .map(|(_, _, n)| n)
            .sum();
        let failed = pharmwatch_casework::service::manual_list(&self.store)?.len();
        out.push_str(&format!(
            "dry run: {} due now, {pending} pending in all, {failed} on the manual-service list; \
             nothing sent\n",
            due.len()
        ));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_follow_the_schedule_within_the_jitter_and_the_seed() {
        let cfg = DeliveryConfig::with_contacts("c.json".into());
        let schedule = [30_000, 120_000, 600_000, 3_600_000, 14_400_000, 43_200_000];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
        let mut again = Xoshiro256PlusPlus::seed_from_u64(42);
        for _ in 0..200 {
            for (i, base) in schedule.iter().enumerate() {
                let w = retry_wait_ms(&cfg.retry_delays_secs, cfg.jitter, i + 1, &mut rng);
                let lo = (*base as f64 * 0.8) as i64;
                let hi = (*base as f64 * 1.2) as i64;
                assert!((lo..=hi).contains(&w), "retry {}: {w} ms", i + 1);
                assert_eq!(
                    w,
                    retry_wait_ms(&cfg.retry_delays_secs, cfg.jitter, i + 1, &mut again),
                    "deterministic by seed"
                );
            }
        }
        // No jitter: the schedule exactly.
        assert_eq!(retry_wait_ms(&[0.5], 0.0, 1, &mut rng), 500);
        // Jitter spreads the waits (not all equal).
        let waits: std::collections::BTreeSet<i64> = (0..20)
            .map(|_| retry_wait_ms(&[30.0], 0.2, 1, &mut rng))
            .collect();
        assert!(waits.len() > 10);
        assert_eq!(cfg.attempts_per_contact(), 7);
    }
}
