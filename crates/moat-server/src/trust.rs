//! Trust at the HTTP edge: API keys, per-key limits, the choice of guard policy, and the audit
//! log. The middleware authenticates every request but `/health` once any key exists and
//! opens a [`Ticket`] for it; handlers name the model, reserve tokens and report what the
//! rails hit on the ticket; when the last holder of the ticket lets go (the whole answer was
//! sent, the stream ended, or the client went away), the reservation is settled with the
//! tokens really used, the usage is counted for the key, one usage event is recorded for
//! costing (key, alias, the model that answered, local or not, tokens, measured busy time)
//! and one audit entry is appended. These three writes are queued for moat.db's writer thread,
//! which commits them in groups (`moat_db::WriteQueue`): the async worker that lets go of the
//! ticket never waits on the disk.
//!
//! Knows nothing of how keys are stored or audit rows written (moat-auth, moat-meter) or how
//! text is scanned (moat-guard); it decides which of their answers becomes which HTTP answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use moat_auth::{Admission, Auth, Key, Reservation};
use moat_guard::{GuardConfig, GuardError, RuleGuard};
use moat_meter::{AuditEntry, CostConfig, Decision, Meter, PriceTable, UsageEvent, ANONYMOUS};

use crate::observe::RequestRecord;
use crate::{ApiError, AppState};

/// What the trust layer needs, as the caller (the CLI, from `moat.toml`) assembles it. The
/// default turns everything off: no keys asked, no audit, no guardrails.
#[derive(Clone, Default)]
pub struct TrustConfig {
    /// API keys and limits; `None` serves without keys.
    pub auth: Option<Arc<Auth>>,
    /// The audit log; `None` keeps none.
    pub meter: Option<Arc<Meter>>,
    /// Put the prompt text in audit entries (the meter still drops it unless its own
    /// configuration records prompts).
    pub record_prompts: bool,
    /// Guard policies by name (`[guard.policies.NAME]`).
    pub policies: BTreeMap<String, GuardConfig>,
    /// The policy for requests that neither their key nor their alias gives one.
    pub default_guard: Option<String>,
    /// Policies by model alias or model name (`[aliases.X] guard = "NAME"`).
    pub alias_guards: BTreeMap<String, String>,
    /// Policies by API key name or public prefix (`[guard.keys]` in moat.toml); a key's own
    /// policy (`moat keys create --guard NAME`) comes first.
    pub key_guards: BTreeMap<String, String>,
    /// Put the originals of the request's redacted values back into the answer.
    pub restore_redactions: bool,
    /// The served model the classifier rail asks (Llama Guard-style prompt).
    pub classifier_model: Option<String>,
    /// List prices for `GET /v1/usage` (`[prices]`); `None` uses moat-meter's defaults.
    pub prices: Option<PriceTable>,
    /// What the local machine costs (`[cost]`), for `GET /v1/usage`.
    pub cost: CostConfig,
}

/// The trust layer, compiled; cheap to clone.
#[derive(Clone)]
pub struct Trust {
    inner: Arc<TrustInner>,
}

struct TrustInner {
    auth: Option<Arc<Auth>>,
    meter: Option<Arc<Meter>>,
    record_prompts: bool,
    guards: BTreeMap<String, ChosenGuard>,
    default_guard: Option<String>,
    alias_guards: BTreeMap<String, String>,
    key_guards: BTreeMap<String, String>,
    restore_redactions: bool,
    classifier_model: Option<String>,
    prices: PriceTable,
    cost: CostConfig,
    /// Every detector on, every finding flagged: what `/v1/moderations` reports.
    moderation: RuleGuard,
    next_request: AtomicU64,
}

impl Default for Trust {
    fn default() -> Self {
        // The default configuration has no policy that could fail to compile.
        Trust::new(TrustConfig::default()).unwrap_or_else(|_| unreachable!())
    }
}

/// A guard policy chosen for one request.
#[derive(Clone)]
pub(crate) struct ChosenGuard {
    /// Whether the output rail acts on anything (else answers are not held back at all).
    pub scans_output: bool,
    pub guard: RuleGuard,
    pub classifier: Option<moat_guard::classifier::ClassifierPolicy>,
}

impl Trust {
    /// Compiles every policy; an invalid one, or a name that no policy has, is an error that
    /// names it.
    pub fn new(config: TrustConfig) -> Result<Trust, GuardError> {
        let mut guards = BTreeMap::new();
        for (name, policy) in &config.policies {
            let guard = RuleGuard::new(policy).map_err(|error| match error {
                GuardError::Config { field, message } => GuardError::Config {
                    field: format!("guard.policies.{name}.{field}"),
                    message,
                },
                other => other,
            })?;
            guards.insert(
                name.clone(),
                ChosenGuard {
                    scans_output: !policy.output.actions.is_empty(),
                    guard,
                    classifier: policy.classifier.clone(),
                },
            );
        }
        let known = |name: &String, field: String| {
            if guards.contains_key(name) {
                Ok(())
            } else {
                Err(GuardError::Config {
                    field,
                    message: format!("no [guard.policies.{name}] is defined"),
                })
            }
        };
        if let Some(name) = &config.default_guard {
            known(name, "guard.default".into())?;
        }
        for (alias, name) in &config.alias_guards {
            known(name, format!("aliases.{alias}.guard"))?;
        }
        for (key, name) in &config.key_guards {
            known(name, format!("guard.keys.{key}"))?;
        }
        let moderation = RuleGuard::new(&GuardConfig::default())?;
        Ok(Trust {
            inner: Arc::new(TrustInner {
                auth: config.auth,
                meter: config.meter,
                record_prompts: config.record_prompts,
                guards,
                default_guard: config.default_guard,
                alias_guards: config.alias_guards,
                key_guards: config.key_guards,
                restore_redactions: config.restore_redactions,
                classifier_model: config.classifier_model,
                prices: config.prices.unwrap_or_else(PriceTable::defaults),
                cost: config.cost,
                moderation,
                next_request: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn moderation_guard(&self) -> &RuleGuard {
        &self.inner.moderation
    }

    pub(crate) fn classifier_model(&self) -> Option<&str> {
        self.inner.classifier_model.as_deref()
    }

    pub(crate) fn restore_redactions(&self) -> bool {
        self.inner.restore_redactions
    }

    /// The usage records (`None` when the server keeps none), prices and machine cost that
    /// `GET /v1/usage` reports from.
    pub(crate) fn metering(&self) -> (Option<&Arc<Meter>>, &PriceTable, &CostConfig) {
        (
            self.inner.meter.as_ref(),
            &self.inner.prices,
            &self.inner.cost,
        )
    }

    /// Whether requests need a key now (some key exists).
    fn keys_required(&self) -> Result<Option<&Arc<Auth>>, ApiError> {
        match &self.inner.auth {
            Some(auth) if auth.keys_exist()? => Ok(Some(auth)),
            _ => Ok(None),
        }
    }

    /// The policy for a request: the key's own, else the alias's (or model's), else the
    /// default, else none. A key naming a policy this server does not define is refused
    /// (fail closed) rather than served unguarded.
    pub(crate) fn guard_for(
        &self,
        key: Option<&Key>,
        requested: &str,
    ) -> Result<Option<ChosenGuard>, ApiError> {
        // A key's own policy (`moat keys create --guard NAME`) is read with the key on every
        // request, so a key created while the server runs has it at once.
        let from_key = key.and_then(|key| {
            key.guard.clone().or_else(|| {
                self.inner
                    .key_guards
                    .get(&key.name)
                    .or_else(|| self.inner.key_guards.get(&key.prefix))
                    .cloned()
            })
        });
        let name = from_key
            .or_else(|| self.inner.alias_guards.get(requested).cloned())
            .or_else(|| self.inner.default_guard.clone());
        let Some(name) = name else {
            return Ok(None);
        };
        match self.inner.guards.get(&name) {
            Some(chosen) => Ok(Some(chosen.clone())),
            None => Err(ApiError::internal(format!(
                "this API key names the guard policy {name:?}, which this server does not define"
            ))),
        }
    }

    /// The policy for a request the gateway routed to a local target: the target's
    /// `guard_policy` when it names one, else as [`Trust::guard_for`] chooses for the alias.
    pub(crate) fn guard_named(
        &self,
        key: Option<&Key>,
        alias: &str,
        policy: Option<&str>,
    ) -> Result<Option<ChosenGuard>, ApiError> {
        let Some(name) = policy else {
            return self.guard_for(key, alias);
        };
        match self.inner.guards.get(name) {
            Some(chosen) => Ok(Some(chosen.clone())),
            None => Err(ApiError::internal(format!(
                "the gateway target names the guard policy {name:?}, which this server does not \
                 define"
            ))),
        }
    }

    /// A new request id, for a request whose client sent none (or an unusable one).
    pub(crate) fn request_id(&self) -> String {
        let n = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        format!("req-{:x}-{n:x}", unix_ms())
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Who made a request and its ticket, put into the request's extensions by the middleware.
#[derive(Clone)]
pub(crate) struct Caller {
    pub key: Option<Key>,
    pub ticket: Ticket,
}

impl Caller {
    /// Names the model (or alias) the request is for and checks the key may use it: the
    /// name as requested, or the model an alias stands for.
    pub(crate) fn authorize(&self, requested: &str, resolved: &str) -> Result<(), ApiError> {
        self.ticket.update(|t| {
            t.model = requested.to_owned();
            t.counts_usage = true;
        });
        if let Some(record) = self.ticket.record() {
            record.set_model(requested);
        }
        let Some(key) = &self.key else {
            return Ok(());
        };
        if key.scopes.allows(requested) || key.scopes.allows(resolved) {
            return Ok(());
        }
        self.ticket.deny("auth.model_not_allowed");
        Err(ApiError::model_not_allowed(format!(
            "API key {} may not use model {requested:?}",
            key.prefix
        )))
    }

    /// Whether the key (if any) may see `model` in `/v1/models`.
    pub(crate) fn may_see(&self, model: &str) -> bool {
        self.key.as_ref().is_none_or(|key| key.scopes.allows(model))
    }

    /// Reserves `tokens` (prompt + `max_tokens`) under the key's limits; settled when the
    /// ticket closes. A request admitted once already (the gateway admits an alias's request
    /// before a local target counts its real prompt) only records the prompt tokens, unless
    /// that admission was only a first part ([`Caller::admit_first`]): then `tokens` are
    /// reserved on top of it.
    pub(crate) fn admit(
        &self,
        trust: &Trust,
        prompt_tokens: u64,
        tokens: u64,
    ) -> Result<(), ApiError> {
        self.ticket.update(|t| t.prompt_tokens = prompt_tokens);
        self.reserve(trust, tokens, false)
    }

    /// Admits a request for the work it does before its prompt is known (a grounded chat's
    /// query embedding), reserving `bound` tokens, so a key past its limits is turned away
    /// before that work; [`Caller::admit`] later reserves the rest. After an admission that
    /// was not a first part (the gateway's), it does nothing.
    pub(crate) fn admit_first(&self, trust: &Trust, bound: u64) -> Result<(), ApiError> {
        self.reserve(trust, bound, true)
    }

    fn reserve(&self, trust: &Trust, tokens: u64, first: bool) -> Result<(), ApiError> {
        let (Some(key), Some(auth)) = (&self.key, &trust.inner.auth) else {
            return Ok(());
        };
        let mut held = None;
        let mut partial = false;
        self.ticket.update(|t| {
            held = t.reservation.take();
            partial = t.partial;
        });
        // Whether the reservation holds only a first part after this call.
        let (denied, partial) = match held {
            None => match auth.reserve(key, tokens)? {
                Admission::Admitted(reservation) => {
                    held = Some(reservation);
                    (None, first)
                }
                Admission::Denied(denied) => (Some(denied), false),
            },
            Some(ref mut reservation) if partial => match auth.extend(key, reservation, tokens) {
                Ok(denied) => (denied, first),
                Err(error) => {
                    self.ticket.update(|t| t.reservation = held);
                    return Err(error.into());
                }
            },
            // Admitted whole before (the gateway): nothing more to reserve.
            Some(_) => (None, false),
        };
        self.ticket.update(|t| {
            // Refused after a first part: only that part's work (settled at the end) ran.
            if denied.is_some() && held.is_some() {
                t.prompt_tokens = 0;
            }
            t.reservation = held;
            t.partial = partial;
        });
        match denied {
            None => Ok(()),
            Some(denied) => {
                self.ticket
                    .deny(&format!("limit.{}", denied.limit.as_str()));
                Err(ApiError::limit_exceeded(&denied))
            }
        }
    }
}

/// One request's account, shared by the middleware, the handler and the answer's stream.
/// When the last clone drops, the request is settled, counted and audited (see the module
/// doc), so a client that disconnects mid-stream is accounted for too.
#[derive(Clone)]
pub(crate) struct Ticket(Arc<Mutex<TicketState>>);

struct TicketState {
    trust: Trust,
    at_ms: i64,
    who: String,
    key: Option<Key>,
    model: String,
    /// Only model requests count as usage of the key.
    counts_usage: bool,
    decision: Decision,
    rails: Vec<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// The model that answered and whether it is local; a request without one (refused, or
    /// for a model not served) records no usage event.
    answered_by: Option<(String, bool)>,
    /// Measured engine time spent on the request.
    busy: Duration,
    prompt: Option<String>,
    request_id: String,
    reservation: Option<Reservation>,
    /// Whether `reservation` holds only a first part of the request (`Caller::admit_first`).
    partial: bool,
    /// Tokens other models spent for this request (a grounded chat's query embedding): held
    /// to the key's limits with the request's own, and counted as usage of those models.
    side: Vec<SideUsage>,
    /// The request's observation record (metrics, log line); it gets the token counts.
    record: Option<Arc<RequestRecord>>,
    /// Whether an allowed request leaves an audit entry (not a metrics scrape: one every few
    /// seconds would bury the log). Refused requests are always audited.
    audit_allowed: bool,
}

impl Ticket {
    fn open(trust: &Trust, route: &str, record: Option<Arc<RequestRecord>>) -> Ticket {
        let request_id = match &record {
            Some(record) => record.id.clone(),
            None => trust.request_id(),
        };
        Ticket(Arc::new(Mutex::new(TicketState {
            trust: trust.clone(),
            at_ms: unix_ms(),
            who: ANONYMOUS.to_owned(),
            key: None,
            model: route.chars().take(256).collect(),
            counts_usage: false,
            decision: Decision::Allowed,
            rails: Vec::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            answered_by: None,
            busy: Duration::ZERO,
            prompt: None,
            request_id,
            reservation: None,
            partial: false,
            side: Vec::new(),
            record,
            audit_allowed: route != "/metrics",
        })))
    }

    /// The request's observation record, for metrics of what the handler sees.
    pub(crate) fn record(&self) -> Option<Arc<RequestRecord>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut TicketState)) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
    }

    /// Records a refusal by something other than a content rail (auth, limits).
    pub(crate) fn deny(&self, rail: &str) {
        self.update(|t| {
            t.decision = Decision::Blocked;
            t.rails.push(rail.to_owned());
            t.counts_usage = false;
        });
    }

    /// Records what a rail hit and the strongest decision so far.
    pub(crate) fn record_rails(&self, decision: Decision, rails: impl IntoIterator<Item = String>) {
        self.update(|t| {
            if rank(decision) > rank(t.decision) {
                t.decision = decision;
            }
            for rail in rails {
                if !t.rails.contains(&rail) && t.rails.len() < 64 {
                    t.rails.push(rail);
                }
            }
        });
    }

    /// Sets the token counts an upstream reported in its usage, for limits, usage and audit.
    pub(crate) fn set_tokens(&self, prompt_tokens: u64, completion_tokens: u64) {
        self.update(|t| {
            t.prompt_tokens = prompt_tokens;
            t.completion_tokens = completion_tokens;
        });
    }

    /// Counts generated tokens.
    pub(crate) fn add_completion_tokens(&self, n: u64) {
        self.update(|t| t.completion_tokens = t.completion_tokens.saturating_add(n));
    }

    /// Names the model that answers (an alias's target, or the upstream's model name) and
    /// whether it is a local engine (priced by busy time) or an upstream (priced by its list
    /// price). Call it once the model is known to be served: only requests that name one
    /// record a usage event.
    pub(crate) fn answered_by(&self, model: &str, local: bool) {
        let model = model.to_owned();
        self.update(|t| t.answered_by = Some((model, local)));
    }

    /// Names an upstream's model as the one that answered, unless a local target already
    /// named itself (the gateway calls this for whatever answered an alias).
    pub(crate) fn answered_upstream(&self, model: &str) {
        let model = model.chars().take(256).collect::<String>();
        self.update(|t| {
            if t.answered_by.is_none() {
                t.answered_by = Some((model, false));
            }
        });
    }

    /// Adds measured engine time (each engine step's share, from `Usage::busy`, or the wall
    /// time of an embedding call) to the request's busy time.
    pub(crate) fn add_busy(&self, busy: Duration) {
        self.update(|t| t.busy = t.busy.saturating_add(busy));
    }

    /// Records the tokens that `model` (local) read and wrote for this request besides the
    /// model that answers (a grounded chat's question embedding, the input rail's classifier),
    /// taking `busy` of engine time: they count against the key's token limits and as that
    /// model's usage, without a request of their own.
    pub(crate) fn add_side_usage(
        &self,
        model: &str,
        prompt_tokens: u64,
        completion_tokens: u64,
        busy: Duration,
    ) {
        if prompt_tokens == 0 && completion_tokens == 0 {
            return;
        }
        let model = clip(model).to_owned();
        self.update(|t| {
            if t.side.len() < 8 {
                t.side.push(SideUsage {
                    model,
                    prompt_tokens,
                    completion_tokens,
                    busy,
                });
            }
        });
    }

    /// Sets the prompt tokens (for a request with no admission step, such as embeddings).
    pub(crate) fn set_prompt_tokens(&self, n: u64) {
        self.update(|t| t.prompt_tokens = n);
    }

    /// Keeps the prompt text for the audit log, when the configuration asks for it.
    pub(crate) fn set_prompt(&self, prompt: impl FnOnce() -> String) {
        self.update(|t| {
            if t.trust.inner.record_prompts {
                t.prompt = Some(prompt());
            }
        });
    }
}

/// What another model spent for a request ([`Ticket::add_side_usage`]).
struct SideUsage {
    model: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    busy: Duration,
}

impl SideUsage {
    fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// At most 256 bytes (what a usage record keeps), cut at a character boundary.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Milliseconds, rounded to the nearest (usage records keep whole milliseconds).
fn rounded_ms(duration: Duration) -> u64 {
    u64::try_from((duration.as_micros() + 500) / 1000).unwrap_or(u64::MAX)
}

fn rank(decision: Decision) -> u8 {
    match decision {
        Decision::Allowed => 0,
        Decision::Flagged => 1,
        Decision::Redacted => 2,
        Decision::Blocked => 3,
    }
}

impl Drop for TicketState {
    fn drop(&mut self) {
        let side_tokens = self
            .side
            .iter()
            .fold(0_u64, |sum, side| sum.saturating_add(side.tokens()));
        let total = self
            .prompt_tokens
            .saturating_add(self.completion_tokens)
            .saturating_add(side_tokens);
        if let Some(auth) = &self.trust.inner.auth {
            for side in &self.side {
                // Its tokens; the request counts once, under the model that answered.
                let tokens = (side.prompt_tokens, side.completion_tokens);
                let counted = auth.submit_usage(self.key.as_ref(), &side.model, tokens, 0);
                if let Err(error) = counted {
                    eprintln!("moat: counting usage of {}: {error}", self.request_id);
                }
            }
            if let Some(reservation) = self.reservation.take() {
                if let Err(error) = auth.settle(reservation, total) {
                    eprintln!("moat: settling {}: {error}", self.request_id);
                }
            }
            if self.counts_usage {
                let tokens = (self.prompt_tokens, self.completion_tokens);
                let counted = auth.submit_usage(self.key.as_ref(), &self.model, tokens, 1);
                if let Err(error) = counted {
                    eprintln!("moat: counting usage of {}: {error}", self.request_id);
                }
            }
        }
        if let Some(record) = &self.record {
            record.set_tokens(self.prompt_tokens, self.completion_tokens);
        }
        if let Some(meter) = &self.trust.inner.meter {
            // Only a request that reached a model is usage: the names are then ones the server
            // serves, so clients cannot fill the table with names of their own.
            if let (true, Some((model, local))) = (self.counts_usage, self.answered_by.take()) {
                let event = UsageEvent {
                    at_ms: unix_ms(),
                    key: clip(&self.who).to_owned(),
                    alias: clip(&self.model).to_owned(),
                    model: clip(&model).to_owned(),
                    local,
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: self.completion_tokens,
                    busy_ms: rounded_ms(self.busy),
                    requests: 1,
                };
                if let Err(error) = meter.submit_usage(&event) {
                    eprintln!("moat: usage record of {}: {error}", self.request_id);
                }
            }
            for side in &self.side {
                // Under the name the client asked for, so an alias's cost includes the work
                // done for it; side usage exists only once that name resolved to a served
                // model (`answered_by` comes first).
                let event = UsageEvent {
                    at_ms: unix_ms(),
                    key: clip(&self.who).to_owned(),
                    alias: clip(&self.model).to_owned(),
                    model: side.model.clone(),
                    local: true,
                    prompt_tokens: side.prompt_tokens,
                    completion_tokens: side.completion_tokens,
                    busy_ms: rounded_ms(side.busy),
                    // The request is counted once, under the model that answered it.
                    requests: 0,
                };
                if let Err(error) = meter.submit_usage(&event) {
                    eprintln!("moat: usage record of {}: {error}", self.request_id);
                }
            }
        }
        let audited = self.audit_allowed || self.decision != Decision::Allowed;
        if let (Some(meter), true) = (&self.trust.inner.meter, audited) {
            // The model as the client named it, which may be empty or very long: the entry
            // is written anyway (every request has one), with "-" or the name cut short.
            let model = match clip(&self.model) {
                "" => "-".to_owned(),
                name => name.to_owned(),
            };
            let entry = AuditEntry {
                at_ms: self.at_ms,
                who: clip(&self.who).to_owned(),
                model,
                decision: self.decision,
                rails: std::mem::take(&mut self.rails),
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                request_id: std::mem::take(&mut self.request_id),
                prompt: self.prompt.take(),
            };
            if let Err(error) = meter.audit_submit(&entry) {
                eprintln!("moat: audit log: {error}");
            }
        }
    }
}

/// The key's form in the audit log and usage records: its public prefix and name.
pub(crate) fn who(key: &Key) -> String {
    clip(&format!("{} {}", key.prefix, key.name)).to_owned()
}

/// Authenticates every request but `/health` (and `/metrics` when the configuration makes
/// it public) once any key exists (401 otherwise), and opens its ticket with the request's id.
/// Routes that are not API routes answer as they are.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    if path == "/health" || (path == "/metrics" && state.config().metrics_public) {
        return Ok(next.run(request).await);
    }
    let trust = state.trust();
    let record = request.extensions().get::<Arc<RequestRecord>>().cloned();
    let ticket = Ticket::open(trust, &path, record);
    let key = match trust.keys_required()? {
        None => None,
        Some(auth) => {
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|value| value.to_str().unwrap_or("\u{fffd}"));
            let Some(header) = header else {
                ticket.deny("auth.missing_api_key");
                return Err(ApiError::unauthenticated(
                    "This server needs an API key: send `Authorization: Bearer <key>` (see `moat keys create`)",
                ));
            };
            match auth.authenticate(header) {
                Ok(key) => Some(key),
                Err(error) => {
                    ticket.deny("auth.invalid_api_key");
                    return Err(error.into());
                }
            }
        }
    };
    if let Some(key) = &key {
        if let Some(record) = ticket.record() {
            record.set_key_prefix(&key.prefix);
        }
        let who = who(key);
        let key = key.clone();
        ticket.update(|t| {
            t.who = who;
            t.key = Some(key);
        });
    }
    request.extensions_mut().insert(Caller { key, ticket });
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_names_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("qwen:7b"), "qwen:7b");
        let long = "é".repeat(200);
        let clipped = clip(&long);
        assert_eq!(clipped.len(), 256);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn busy_time_rounds_to_the_nearest_millisecond() {
        assert_eq!(rounded_ms(Duration::from_micros(1_499)), 1);
        assert_eq!(rounded_ms(Duration::from_micros(1_500)), 2);
        assert_eq!(rounded_ms(Duration::ZERO), 0);
    }
}
