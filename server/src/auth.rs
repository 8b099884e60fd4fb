//! Passwords (argon2id, salted) and opaque session tokens (random; stored only as SHA-256).

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("the password must be at most {max} characters")]
    TooLong { max: usize },
    #[error("could not hash the password: {0}")]
    Hash(String),
}

pub const MIN_PASSWORD_LEN: usize = 10;

/// A person's password must be at least this long, and at most 1,024 characters (argon2 would
/// take a megabyte just as well, but nobody needs one and a stranger must not send one).
pub fn check_password_rules(password: &str) -> Result<(), AuthError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(AuthError::TooShort { min: MIN_PASSWORD_LEN });
    }
    if len > MAX_PASSWORD_LEN {
        return Err(AuthError::TooLong { max: MAX_PASSWORD_LEN });
    }
    Ok(())
}

pub const MAX_PASSWORD_LEN: usize = 1024;

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    check_password_rules(password)?;
    hash_password_unchecked(password)
}

/// Hashes without the length rule, for secrets whose own rules differ (a charger's password).
pub fn hash_password_unchecked(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// False for a wrong password and for a malformed stored hash alike.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so a wrong email costs as much
/// time as a wrong password and does not reveal which accounts exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy-password-never-matches").unwrap_or_default())
}

/// Argon2 is deliberately costly (about 19 MiB and tens of milliseconds per call). Many chargers
/// reconnecting at once must queue for it rather than each take a blocking thread: glibc gives every
/// thread its own heap arena and keeps what argon2 freed there, so a burst of a thousand handshakes
/// on tokio's blocking pool left gigabytes resident (measured: docs/benchmarks.md, OCPP central system).
/// A few long-lived threads, one per core, do all the hashing instead.
type HashJob = Box<dyn FnOnce() + Send>;

fn argon2_worker() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<HashJob>> {
    static WORKERS: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<HashJob>>> =
        std::sync::OnceLock::new();
    WORKERS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..std::thread::available_parallelism().map_or(2, |n| n.get()) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start an argon2 worker thread");
            }
        }
        std::sync::Mutex::new(tx)
    })
}

/// Jobs queued for or running on the argon2 workers now.
static ARGON2_QUEUED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Argon2 work waiting now (for the queue's bound and for tests).
pub fn argon2_queued() -> usize {
    ARGON2_QUEUED.load(std::sync::atomic::Ordering::Relaxed)
}

async fn on_argon2_worker<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = tx.send(work());
        ARGON2_QUEUED.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    });
    ARGON2_QUEUED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if argon2_worker().lock().ok().and_then(|w| w.send(job).ok()).is_none() {
        ARGON2_QUEUED.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        return None;
    }
    rx.await.ok()
}

/// The argon2 queue is longer than a stranger's work may make it: the caller should answer "busy,
/// try again" rather than queue. People signing in are never turned away by it (their own
/// throttles bound them); chargers' handshakes are (`--max-argon2-queue`).
pub fn argon2_busy(limit: usize) -> bool {
    argon2_queued() >= limit
}

/// [`verify_password`] on the argon2 workers.
pub async fn verify_password_bounded(password: String, stored_hash: String) -> bool {
    on_argon2_worker(move || verify_password(&password, &stored_hash)).await.unwrap_or(false)
}

/// [`hash_password_unchecked`] on the argon2 workers.
pub async fn hash_password_bounded(password: String) -> Result<String, AuthError> {
    on_argon2_worker(move || hash_password_unchecked(&password))
        .await
        .unwrap_or_else(|| Err(AuthError::Hash("argon2 workers unavailable".into())))
}

/// A fresh session token for a cookie: 256 random bits, URL-safe.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not-a-hash"));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(matches!(hash_password("short"), Err(AuthError::TooShort { .. })));
    }

    #[test]
    fn tokens_are_unique_and_hashes_stable() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_argon2_queue_is_counted_so_handshakes_can_be_turned_away() {
        let hash = hash_password("correct horse battery").expect("hash");
        let checks: Vec<_> = (0..12)
            .map(|_| tokio::spawn(verify_password_bounded("wrong horse battery".into(), hash.clone())))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Twelve checks on a worker per core: most of them wait.
        assert!(argon2_queued() >= 4, "{} queued", argon2_queued());
        assert!(argon2_busy(4));
        for check in checks {
            assert!(!check.await.expect("joined"));
        }
        assert!(!argon2_busy(4), "the queue empties as the checks finish ({} left)", argon2_queued());
    }
}
