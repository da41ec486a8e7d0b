//! Who is calling, over HTTP: a fixed grant, a verified JWT, or a header set by a trusted proxy.
//!
//! A JWT is verified with the key given (HS256 secret, or an RS256/ES256 public key in PEM):
//! the signature, `exp` (required) and `nbf` always, `aud` and `iss` when `--audience` and
//! `--issuer` are given (then required). The grant is the claim `--grant-claim` (default `sub`),
//! which must be a non-empty string. The verified claims are given to the policy's conditions as
//! `context.claims`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The grant the policy sees.
    pub grant: String,
    /// What a session is bound to: a request with another principal cannot use it.
    pub principal: String,
    /// The call context (`{"claims": ...}` for a JWT), if any.
    pub context: Option<Value>,
}

/// Why a request is not authenticated (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How requests are authenticated.
pub enum Authenticator {
    /// Every request has this grant (no authentication).
    Fixed(String),
    /// A bearer JWT.
    Jwt(Box<Jwt>),
    /// The grant is this header's value.
    Header(axum::http::HeaderName),
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authenticator::Fixed(g) => f.debug_tuple("Fixed").field(g).finish(),
            Authenticator::Jwt(_) => f.write_str("Jwt"),
            Authenticator::Header(h) => f.debug_tuple("Header").field(h).finish(),
        }
    }
}

/// A JWT verifier.
pub struct Jwt {
    key: DecodingKey,
    validation: Validation,
    grant_claim: String,
    /// Tokens verified already (a client sends the same one on every request), with their
    /// `exp` and `nbf`, which are checked again on every use.
    verified: Mutex<HashMap<String, Verified>>,
}

/// A token that passed verification.
struct Verified {
    identity: Identity,
    exp: u64,
    nbf: Option<u64>,
}

/// The most verified tokens kept; past this the cache starts over.
pub const VERIFIED_TOKENS_MAX: usize = 4096;

/// What the JWT options say (from the command line).
#[derive(Debug, Default, Clone)]
pub struct JwtOptions<'a> {
    /// The claim holding the grant.
    pub grant_claim: &'a str,
    /// The required audience.
    pub audience: Option<&'a str>,
    /// The required issuer.
    pub issuer: Option<&'a str>,
}

impl Jwt {
    /// A verifier of HS256 tokens signed with the secret in `path` (its bytes, with one
    /// trailing newline removed).
    pub fn from_secret_file(path: &Path, options: JwtOptions<'_>) -> Result<Self, String> {
        let mut secret = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWT secret `{}`: {e}", path.display()))?;
        if secret.last() == Some(&b'\n') {
            secret.pop();
            if secret.last() == Some(&b'\r') {
                secret.pop();
            }
        }
        if secret.len() < 32 {
            return Err(format!(
                "the JWT secret `{}` is {} bytes long: use at least 32 random bytes",
                path.display(),
                secret.len()
            ));
        }
        Ok(Self::new(DecodingKey::from_secret(&secret), &[Algorithm::HS256], options))
    }

    /// A verifier of RS256 or ES256 tokens, whose public key is the PEM in `path`.
    pub fn from_public_key_file(path: &Path, options: JwtOptions<'_>) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWT public key `{}`: {e}", path.display()))?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::RS256], options));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::ES256], options));
        }
        Err(format!(
            "the JWT public key `{}` is neither an RSA nor an EC (P-256) public key in PEM",
            path.display()
        ))
    }

    fn new(key: DecodingKey, algorithms: &[Algorithm], options: JwtOptions<'_>) -> Self {
        let mut validation = Validation::new(algorithms.first().copied().unwrap_or_default());
        validation.algorithms = algorithms.to_vec();
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match options.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = options.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Jwt {
            key,
            validation,
            grant_claim: options.grant_claim.to_owned(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies `token` and returns who it names. A token verified before is not verified
    /// again (its signature and claims cannot have changed), but its `exp` and `nbf` are
    /// checked against the clock on every use.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(identity) = self.cached(token, now) {
            return Ok(identity);
        }
        let (identity, exp, nbf) = self.verify_uncached(token)?;
        if let Some(exp) = exp {
            let mut verified = lock(&self.verified);
            if verified.len() >= VERIFIED_TOKENS_MAX {
                verified.clear();
            }
            verified.insert(token.to_owned(), Verified { identity: identity.clone(), exp, nbf });
        }
        Ok(identity)
    }

    /// The identity of `token` if it was verified before and is still valid at `now`.
    fn cached(&self, token: &str, now: u64) -> Option<Identity> {
        let verified = lock(&self.verified);
        let v = verified.get(token)?;
        let leeway = self.validation.leeway;
        let live = v.exp.saturating_add(leeway) >= now
            && v.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway));
        live.then(|| v.identity.clone())
    }

    /// Verifies `token` with the key: who it names, its `exp` and `nbf` (`None` for `exp` when
    /// they are not plain integers: such a token is verified every time).
    fn verify_uncached(
        &self,
        token: &str,
    ) -> Result<(Identity, Option<u64>, Option<u64>), AuthError> {
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| AuthError(format!("invalid token: {}", describe(&e))))?;
        let claims = data.claims;
        let exp = claims.get("exp").and_then(Value::as_u64);
        let nbf = match claims.get("nbf") {
            None => Some(None),
            Some(n) => n.as_u64().map(Some),
        };
        let (exp, nbf) = match nbf {
            Some(nbf) => (exp, nbf),
            None => (None, None),
        };
        let grant = match claims.get(&self.grant_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(AuthError(format!(
                    "invalid token: the claim `{}` (the grant) is missing or not a non-empty string",
                    self.grant_claim
                )));
            }
        };
        let part = |name: &str| claims.get(name).map(Value::to_string).unwrap_or_default();
        let principal = format!("jwt\u{0}{}\u{0}{}\u{0}{grant}", part("iss"), part("sub"));
        Ok((Identity { grant, principal, context: Some(json!({ "claims": claims })) }, exp, nbf))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "it has expired".into(),
        K::ImmatureSignature => "it is not valid yet (`nbf`)".into(),
        K::InvalidAudience => "wrong audience (`aud`)".into(),
        K::InvalidIssuer => "wrong issuer (`iss`)".into(),
        K::InvalidSignature => "bad signature".into(),
        K::InvalidAlgorithm => "algorithm not accepted".into(),
        K::MissingRequiredClaim(c) => format!("the claim `{c}` is required"),
        _ => e.to_string(),
    }
}

impl Authenticator {
    /// Who made the request with these headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        match self {
            Authenticator::Fixed(grant) => Ok(Identity {
                grant: grant.clone(),
                principal: format!("fixed\u{0}{grant}"),
                context: None,
            }),
            Authenticator::Jwt(jwt) => {
                let token = bearer(headers).ok_or_else(|| {
                    AuthError("missing `Authorization: Bearer <token>`".to_owned())
                })?;
                jwt.verify(token)
            }
            Authenticator::Header(name) => {
                if headers.get_all(name).iter().nth(1).is_some() {
                    // A proxy that appends its header behind the client's would otherwise let
                    // the client's own value (the first) name the grant.
                    return Err(AuthError(format!(
                        "more than one `{name}` header: the trusted proxy must set exactly one"
                    )));
                }
                let value = headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| AuthError(format!("missing the `{name}` header")))?;
                Ok(Identity {
                    grant: value.to_owned(),
                    principal: format!("header\u{0}{value}"),
                    context: None,
                })
            }
        }
    }

    /// Whether requests are authenticated at all.
    pub fn authenticates(&self) -> bool {
        !matches!(self, Authenticator::Fixed(_))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Compares two secrets in time independent of where they differ (their SHA-256 digests are
/// compared whole).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter().zip(db.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn jwt(aud: Option<&str>, iss: Option<&str>) -> Jwt {
        let opts = JwtOptions { grant_claim: "sub", audience: aud, issuer: iss };
        Jwt::new(DecodingKey::from_secret(SECRET), &[Algorithm::HS256], opts)
    }

    fn token(claims: Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_verified_token_is_kept_but_its_exp_and_nbf_checked_on_every_use() {
        let j = jwt(None, None);
        let t = now() as u64;
        let tok = token(json!({"sub": "alice", "exp": t + 60, "nbf": t - 10}));
        assert!(j.cached(&tok, t).is_none(), "nothing before the first verification");
        let id = j.verify(&tok).unwrap();
        assert_eq!(j.cached(&tok, t), Some(id.clone()));
        assert_eq!(j.verify(&tok).unwrap(), id);
        // Past `exp` (and the leeway), or before `nbf`, the kept token is not used.
        assert!(j.cached(&tok, t + 60 + LEEWAY_SECONDS).is_some());
        assert!(j.cached(&tok, t + 61 + LEEWAY_SECONDS).is_none());
        assert!(j.cached(&tok, t - 11 - LEEWAY_SECONDS).is_none());
        // A forged signature is another token: verified (and refused), never served from the
        // cache.
        let last = if tok.ends_with('A') { 'B' } else { 'A' };
        let forged = format!("{}{last}", &tok[..tok.len() - 1]);
        assert!(j.cached(&forged, t).is_none());
        assert!(j.verify(&forged).is_err());
        // Refused tokens are not kept.
        let expired = token(json!({"sub": "a", "exp": t - 3600}));
        assert!(j.verify(&expired).is_err());
        assert!(j.cached(&expired, t - 3600).is_none());
    }

    #[test]
    fn verifies_and_refuses() {
        let j = jwt(Some("gw"), Some("idp"));
        let ok = token(
            json!({"sub": "alice", "aud": "gw", "iss": "idp", "exp": now() + 60, "team": "x"}),
        );
        let id = j.verify(&ok).unwrap();
        assert_eq!(id.grant, "alice");
        assert_eq!(id.context.unwrap()["claims"]["team"], "x");
        let expired = token(json!({"sub": "a", "aud": "gw", "iss": "idp", "exp": now() - 3600}));
        assert!(j.verify(&expired).unwrap_err().0.contains("expired"));
        let aud = token(json!({"sub": "a", "aud": "other", "iss": "idp", "exp": now() + 60}));
        assert!(j.verify(&aud).unwrap_err().0.contains("audience"));
        let no_aud = token(json!({"sub": "a", "iss": "idp", "exp": now() + 60}));
        assert!(j.verify(&no_aud).is_err());
        let iss = token(json!({"sub": "a", "aud": "gw", "iss": "evil", "exp": now() + 60}));
        assert!(j.verify(&iss).unwrap_err().0.contains("issuer"));
        let nbf = token(
            json!({"sub": "a", "aud": "gw", "iss": "idp", "exp": now() + 7200, "nbf": now() + 3600}),
        );
        assert!(j.verify(&nbf).unwrap_err().0.contains("not valid yet"));
        let no_exp = token(json!({"sub": "a", "aud": "gw", "iss": "idp"}));
        assert!(j.verify(&no_exp).unwrap_err().0.contains("exp"));
        let no_sub = token(json!({"aud": "gw", "iss": "idp", "exp": now() + 60}));
        assert!(j.verify(&no_sub).unwrap_err().0.contains("`sub`"));
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "a", "aud": "gw", "iss": "idp", "exp": now() + 60}),
            &EncodingKey::from_secret(b"another secret, 32 bytes long!!!"),
        )
        .unwrap();
        assert!(j.verify(&other).unwrap_err().0.contains("signature"));
    }

    /// A P-256 key pair made for this test only.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPdECk0dshBb8T1vx
EHrrllhGZXjDrrw1sKLtqxXcNfGhRANCAAT3Mv4Y9aGpZPYMa055XpO3Cc9i73u8
yIJFGP4Ab7awSodHeOf7LB8Aw1HWyXP1Pbifdwwxvt3GnvJ6KkWy8pTc
-----END PRIVATE KEY-----
";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9zL+GPWhqWT2DGtOeV6TtwnPYu97
vMiCRRj+AG+2sEqHR3jn+ywfAMNR1slz9T24n3cMMb7dxp7yeipFsvKU3A==
-----END PUBLIC KEY-----
";

    #[test]
    fn es256_public_key_files_verify_and_refuse_hs256_forgeries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pub");
        std::fs::write(&path, EC_PUBLIC).unwrap();
        let opts = JwtOptions { grant_claim: "team", audience: None, issuer: None };
        let j = Jwt::from_public_key_file(&path, opts).unwrap();
        let claims = json!({"sub": "a", "team": "ops", "exp": now() + 60});
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let good = encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap();
        assert_eq!(j.verify(&good).unwrap().grant, "ops");
        // The classic confusion: an HS256 token "signed" with the public key is refused.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert!(j.verify(&forged).is_err());
        std::fs::write(&path, "not a key").unwrap();
        let opts = JwtOptions { grant_claim: "sub", audience: None, issuer: None };
        assert!(Jwt::from_public_key_file(&path, opts).is_err());
    }

    #[test]
    fn trusted_header_and_fixed_grants() {
        let a = Authenticator::Header(axum::http::HeaderName::from_static("x-user"));
        let mut h = HeaderMap::new();
        assert!(a.authenticate(&h).is_err());
        h.insert("x-user", "alice".parse().unwrap());
        let id = a.authenticate(&h).unwrap();
        assert_eq!(id.grant, "alice");
        h.insert("x-user", "bob".parse().unwrap());
        assert_ne!(a.authenticate(&h).unwrap().principal, id.principal);
        // Two values (a client's and the proxy's, appended): neither is trusted.
        h.append("x-user", "alice".parse().unwrap());
        let e = a.authenticate(&h).unwrap_err();
        assert!(e.0.contains("more than one `x-user` header"), "{}", e.0);
        let f = Authenticator::Fixed("g".into());
        assert_eq!(f.authenticate(&HeaderMap::new()).unwrap().grant, "g");
    }

    /// The edges docs/gateway-http.md promises: 30 s of clock skew on `exp` and `nbf` (not
    /// 0, not jsonwebtoken's default 60), a grant claim that must be a non-empty string, a
    /// secret file of at least 32 bytes whose one trailing newline is ignored, and at most
    /// 4096 verified tokens kept.
    #[test]
    fn the_documented_edges_of_the_jwt_checks() {
        let t = now();
        let ok = |claims: Value| jwt(None, None).verify(&token(claims));
        assert!(ok(json!({"sub": "a", "exp": t - 10})).is_ok(), "within the skew");
        assert!(ok(json!({"sub": "a", "exp": t - 45})).unwrap_err().0.contains("expired"));
        assert!(ok(json!({"sub": "a", "exp": t + 60, "nbf": t + 10})).is_ok(), "within the skew");
        assert!(ok(json!({"sub": "a", "exp": t + 60, "nbf": t + 45})).is_err());
        for grant in [json!(""), json!(7), json!(["a"]), Value::Null] {
            let e = ok(json!({"sub": grant, "exp": t + 60})).unwrap_err();
            // (jsonwebtoken refuses a `sub` that is not a string or a number itself.)
            let own = grant == "" || grant == 7;
            assert!(!own || e.0.contains("non-empty string"), "{grant}: {}", e.0);
        }

        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let opts = || JwtOptions { grant_claim: "sub", audience: None, issuer: None };
        let short = file("short", b"0123456789abcdef0123456789abcde\n");
        let e = Jwt::from_secret_file(&short, opts()).err().unwrap();
        assert!(e.contains("31 bytes long: use at least 32"), "{e}");
        let tok = token(json!({"sub": "a", "exp": t + 60}));
        let one = file("one", &[SECRET, b"\n"].concat());
        assert!(Jwt::from_secret_file(&one, opts()).unwrap().verify(&tok).is_ok());
        let two = file("two", &[SECRET, b"\n\n"].concat());
        assert!(
            Jwt::from_secret_file(&two, opts()).unwrap().verify(&tok).is_err(),
            "only one trailing newline is ignored"
        );

        let j = jwt(None, None);
        for i in 0..=VERIFIED_TOKENS_MAX {
            j.verify(&token(json!({"sub": format!("u{i}"), "exp": t + 60}))).unwrap();
            assert!(lock(&j.verified).len() <= VERIFIED_TOKENS_MAX);
        }
        assert_eq!(VERIFIED_TOKENS_MAX, 4096);
    }

    #[test]
    fn bearer_and_compare() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert!(constant_time_eq(b"x", b"x"));
        assert!(!constant_time_eq(b"x", b"y"));
        assert!(!constant_time_eq(b"x", b"xx"));
    }
}
