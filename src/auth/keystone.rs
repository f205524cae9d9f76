//! `auth_strategy = keystone`: every `X-Auth-Token` is validated against Keystone's v3 API,
//! the way keystonemiddleware's `auth_token` does it, and identity headers sent by clients
//! are ignored.
//!
//! The image service holds a token of its own (the *service token*, from the
//! `[keystone_authtoken]` credentials), obtained on first use and renewed before it
//! expires, or at once when Keystone rejects it. A user's token is validated with
//! `GET /v3/auth/tokens?nocatalog`, `X-Auth-Token: <service token>`,
//! `X-Subject-Token: <user token>`: 200 gives the user, project and roles; 404 means the
//! token is invalid, expired or revoked (→ 401 with `WWW-Authenticate: Keystone uri="…"`).
//! Anything else, or no answer, is 503: an unreachable Keystone never opens the door.
//!
//! Valid results are cached for `token_cache_time`, never beyond the token's own expiry, in a
//! bounded map keyed by the token's MD5 digest (the raw token is not kept as a key; MD5 is
//! enough here because nobody can choose Keystone tokens to collide with another user's).
//! Failures are never cached. So a revoked token keeps working for at most
//! `token_cache_time`, as with keystonemiddleware.
//!
//! Tokens and the service password never appear in logs or replies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use ureq::Agent;

use crate::auth::{AuthOptions, Context, ContextSource};
use crate::config::KeystoneOptions;
use crate::error::{Error, Result};
use crate::http::Request;

/// Most validated tokens remembered at once; the oldest entry goes first.
pub const CACHE_CAPACITY: usize = 10_000;

/// Largest Keystone reply read (a token document without catalog is a few KiB).
const MAX_REPLY: u64 = 1024 * 1024;

/// Longest token accepted from a client; longer ones are refused without asking Keystone.
const MAX_TOKEN_LEN: usize = 8192;

/// What Keystone says about a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `token.user.id`.
    pub user_id: String,
    /// `token.project.id` (absent for unscoped and domain-scoped tokens).
    pub project_id: Option<String>,
    /// `token.roles[].name`.
    pub roles: Vec<String>,
    /// `token.expires_at`, when Keystone gave one.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// Reads the `token` object of a validation reply.
    fn from_reply(v: &Value) -> Option<Identity> {
        let t = v.get("token")?;
        let user_id = t.get("user")?.get("id")?.as_str()?.to_string();
        let project_id = t
            .get("project")
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let roles = t
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let expires_at = t
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(crate::timeutil::parse);
        Some(Identity {
            user_id,
            project_id,
            roles,
            expires_at,
        })
    }
}

/// The cache key of a token: its SHA-256 digest (the cache never holds the token itself).
pub type TokenKey = [u8; 32];

/// The key under which `token` is cached.
pub fn token_key(token: &str) -> TokenKey {
    openssl::sha::sha256(token.as_bytes())
}

/// A bounded map from token digests to identities, each entry with its own deadline.
///
/// Time is passed in by the caller, so tests drive it without sleeping.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenKey, CacheEntry>,
    /// Insertion order: generation → key (the smallest generation is the oldest entry).
    order: BTreeMap<u64, TokenKey>,
    next_generation: u64,
}

#[derive(Debug)]
struct CacheEntry {
    identity: Identity,
    until: Instant,
    generation: u64,
}

impl TokenCache {
    /// An empty cache holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_generation: 0,
        }
    }

    /// The identity cached for `key`, unless its deadline has passed at `now` (an expired
    /// entry is dropped).
    pub fn get(&mut self, key: &TokenKey, now: Instant) -> Option<Identity> {
        let entry = self.entries.get(key)?;
        if now < entry.until {
            return Some(entry.identity.clone());
        }
        self.remove(key);
        None
    }

    /// Remembers `identity` for `key` until `until` (nothing when that is not after `now`).
    /// When full, expired entries go first, then the oldest.
    pub fn insert(&mut self, key: TokenKey, identity: Identity, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        self.remove(&key);
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now < e.until);
            let live: std::collections::HashSet<u64> =
                self.entries.values().map(|e| e.generation).collect();
            self.order.retain(|g, _| live.contains(g));
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_first() {
                Some((_, oldest)) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.order.insert(generation, key);
        self.entries.insert(
            key,
            CacheEntry {
                identity,
                until,
                generation,
            },
        );
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &TokenKey) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.generation);
        }
    }

    /// Number of entries (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How long a validated token may be served from the cache, from `now`: `cache_time`,
/// but never past the token's expiry (`expires_at`, wall-clock).
pub fn cache_deadline(
    now: Instant,
    wall_now: SystemTime,
    cache_time: Duration,
    expires_at: Option<SystemTime>,
) -> Instant {
    let mut ttl = cache_time;
    if let Some(exp) = expires_at {
        ttl = ttl.min(exp.duration_since(wall_now).unwrap_or(Duration::ZERO));
    }
    now + ttl
}

/// The image service's own token.
struct ServiceToken {
    token: String,
    renew_at: Instant,
}

/// When to renew a token that expires `remaining` from now: a margin of up to two minutes
/// before expiry (half the remaining time for short-lived tokens).
fn renew_after(remaining: Duration) -> Duration {
    let margin = Duration::from_secs(120).min(remaining / 2);
    remaining - margin
}

/// What validating a user token gave.
enum Validation {
    Valid(Identity),
    Invalid,
}

/// The `keystone` context source.
pub struct Keystone {
    opts: KeystoneOptions,
    auth: AuthOptions,
    allow_anonymous: bool,
    /// `<auth_url without /v3>/v3/auth/tokens`.
    tokens_url: String,
    agent: Agent,
    service: Mutex<Option<ServiceToken>>,
    cache: Mutex<TokenCache>,
}

/// Locks a mutex, carrying on after a panic elsewhere (the data stay consistent: every
/// critical section below leaves them valid at each step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Keystone {
    /// A context source validating tokens with the Keystone of `opts` (whose `auth_url`,
    /// `username`, `password` and `project_name` must be set: the config checks it).
    pub fn new(opts: KeystoneOptions, auth: AuthOptions, allow_anonymous: bool) -> Keystone {
        let base = opts.auth_url.clone().unwrap_or_default();
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/v3").unwrap_or(base);
        let agent: Agent = Agent::config_builder()
            .tls_config(crate::tls::native())
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(opts.http_connect_timeout))
            .timeout_global(Some(opts.http_request_timeout))
            .user_agent(concat!("glance-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Keystone {
            tokens_url: format!("{base}/v3/auth/tokens"),
            opts,
            auth,
            allow_anonymous,
            agent,
            service: Mutex::new(None),
            cache: Mutex::new(TokenCache::new(CACHE_CAPACITY)),
        }
    }

    /// Gets the service token in the background, so that a wrong password or an unreachable
    /// Keystone shows in the log at start-up rather than at the first request.
    pub fn warm_up(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("keystone-warm-up".into())
            .spawn(move || match me.service_token(false) {
                Ok(_) => log::info!(
                    "Keystone at {} issued the service token (user {})",
                    me.tokens_url,
                    me.opts.username.as_deref().unwrap_or("")
                ),
                Err(e) => log::warn!("{e}; requests with tokens get 503 until it can"),
            });
        if let Err(e) = spawned {
            log::warn!("could not start the Keystone warm-up thread: {e}");
        }
    }

    fn unavailable(&self) -> Error {
        Error::Unavailable("The identity service (Keystone) is unavailable".into())
    }

    fn auth_required(&self, message: &str) -> Error {
        Error::AuthRequired {
            message: message.to_string(),
            uri: self.opts.challenge_uri().to_string(),
        }
    }

    /// The service token, fetched when missing, due for renewal, or `force`d (after
    /// Keystone rejected it).
    fn service_token(&self, force: bool) -> Result<String> {
        let mut guard = lock(&self.service);
        if !force
            && let Some(st) = guard.as_ref()
            && Instant::now() < st.renew_at
        {
            return Ok(st.token.clone());
        }
        *guard = None;
        let fresh = self.issue_service_token()?;
        let token = fresh.token.clone();
        *guard = Some(fresh);
        Ok(token)
    }

    /// `POST /v3/auth/tokens` with the service user's password, scoped to its project.
    fn issue_service_token(&self) -> Result<ServiceToken> {
        let o = &self.opts;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": o.username.as_deref().unwrap_or(""),
                "domain": {"name": o.user_domain_name},
                "password": o.password.as_ref().map(|p| p.expose()).unwrap_or(""),
            }}},
            "scope": {"project": {
                "name": o.project_name.as_deref().unwrap_or(""),
                "domain": {"name": o.project_domain_name},
            }},
        }});
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}?nocatalog", self.tokens_url))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| Error::Internal(format!("building the Keystone request: {e}")))?;
        let started = Instant::now();
        let mut resp = self.agent.run(request).map_err(|e| {
            log::error!(
                "cannot reach Keystone at {} for the service token: {e}",
                self.tokens_url
            );
            self.unavailable()
        })?;
        let status = resp.status().as_u16();
        if status != 201 && status != 200 {
            log::error!(
                "Keystone at {} refused the service credentials of user '{}' in project '{}' \
                 (status {status}); check [keystone_authtoken]",
                self.tokens_url,
                o.username.as_deref().unwrap_or(""),
                o.project_name.as_deref().unwrap_or("")
            );
            return Err(self.unavailable());
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|t| !t.is_empty());
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY)
            .read_to_string()
            .unwrap_or_default();
        let Some(token) = token else {
            log::error!("Keystone issued a service token without X-Subject-Token");
            return Err(self.unavailable());
        };
        let expires_at = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            v.get("token")
                .and_then(|t| t.get("expires_at"))
                .and_then(Value::as_str)
                .and_then(crate::timeutil::parse)
        });
        // Without an expiry, renew after the cache time (at least a minute).
        let remaining = match expires_at {
            Some(exp) => exp
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            None => self.opts.token_cache_time.max(Duration::from_secs(60)),
        };
        log::debug!(
            "service token issued in {} ms, valid for {} s",
            started.elapsed().as_millis(),
            remaining.as_secs()
        );
        Ok(ServiceToken {
            token,
            renew_at: started + renew_after(remaining),
        })
    }

    /// Asks Keystone about `token`; renews the service token once if Keystone rejects it.
    fn validate(&self, token: &str) -> Result<Validation> {
        for attempt in 0..2 {
            let service = self.service_token(attempt > 0)?;
            let request = ureq::http::Request::builder()
                .method("GET")
                .uri(format!("{}?nocatalog", self.tokens_url))
                .header("X-Auth-Token", service)
                .header("X-Subject-Token", token)
                .header("Accept", "application/json")
                .body(Vec::new())
                .map_err(|_| self.auth_required("The token is malformed"))?;
            let mut resp = self.agent.run(request).map_err(|e| {
                log::error!("cannot reach Keystone at {}: {e}", self.tokens_url);
                self.unavailable()
            })?;
            match resp.status().as_u16() {
                200 => {
                    let text = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_REPLY)
                        .read_to_string()
                        .map_err(|e| {
                            log::error!("reading Keystone's validation reply: {e}");
                            self.unavailable()
                        })?;
                    let identity = serde_json::from_str::<Value>(&text)
                        .ok()
                        .as_ref()
                        .and_then(Identity::from_reply);
                    return match identity {
                        Some(i) => Ok(Validation::Valid(i)),
                        None => {
                            log::error!("Keystone's validation reply lacks token.user.id");
                            Err(self.unavailable())
                        }
                    };
                }
                404 => return Ok(Validation::Invalid),
                401 if attempt == 0 => {
                    log::info!("Keystone rejected the service token; getting a new one");
                }
                status => {
                    log::error!(
                        "Keystone answered {status} to a token validation by service user \
                         '{}' (does it have the service or admin role?)",
                        self.opts.username.as_deref().unwrap_or("")
                    );
                    return Err(self.unavailable());
                }
            }
        }
        Err(self.unavailable())
    }

    /// The identity of `token`: from the cache, else from Keystone (and then cached).
    fn identity(&self, token: &str) -> Result<Identity> {
        let key = token_key(token);
        if let Some(identity) = lock(&self.cache).get(&key, Instant::now()) {
            return Ok(identity);
        }
        let identity = match self.validate(token)? {
            Validation::Valid(i) => i,
            Validation::Invalid => {
                log::info!("Keystone rejected a token (invalid, expired or revoked)");
                return Err(self.auth_required("The token is invalid or has expired"));
            }
        };
        let wall_now = SystemTime::now();
        if identity.expires_at.is_some_and(|exp| exp <= wall_now) {
            return Err(self.auth_required("The token is invalid or has expired"));
        }
        if !self.opts.token_cache_time.is_zero() {
            let now = Instant::now();
            let until = cache_deadline(
                now,
                wall_now,
                self.opts.token_cache_time,
                identity.expires_at,
            );
            lock(&self.cache).insert(key, identity.clone(), until, now);
        }
        Ok(identity)
    }
}

impl ContextSource for Keystone {
    fn context(&self, req: &Request<'_>) -> Result<Context> {
        let token = req
            .header("x-auth-token")
            .or_else(|| req.header("x-storage-token"))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            if self.allow_anonymous {
                return Ok(Context::anonymous(&self.auth));
            }
            return Err(self.auth_required("Authentication required"));
        };
        if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.auth_required("The token is invalid or has expired"));
        }
        let identity = self.identity(token)?;
        log::debug!(
            "token of user {} (project {}) accepted",
            identity.user_id,
            identity.project_id.as_deref().unwrap_or("-")
        );
        Ok(Context::for_identity(
            Some(token.to_string()),
            Some(identity.user_id),
            identity.project_id,
            identity.roles,
            &self.auth,
        ))
    }
}

#[cfg(test)]
mod tests;
