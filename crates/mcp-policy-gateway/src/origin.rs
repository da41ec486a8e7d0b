//! The DNS-rebinding rule of the HTTP listener (the MCP specification requires servers to
//! validate `Origin`): a web page the user visits must not be able to drive the gateway.
//!
//! - `Host`: on a loopback listener, only loopback names (`localhost`, `127.0.0.1`, `[::1]`,
//!   with any port) and the `--allowed-host` values are accepted; a rebound DNS name pointing to
//!   127.0.0.1 carries its own name in `Host` and is refused. On a non-loopback listener, when
//!   `--allowed-host` is given only those hosts are accepted; otherwise any.
//! - `Origin`: a request without one (a non-browser client) is accepted; a request with one is
//!   accepted only when it is a loopback origin on a loopback listener, or one of
//!   `--allowed-origin`. A refused request gets 403.

/// What `Host` and `Origin` may be.
#[derive(Debug, Clone, Default)]
pub struct OriginRule {
    loopback: bool,
    hosts: Vec<String>,
    origins: Vec<String>,
}

fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host[:port]` (with `[v6]` brackets kept) into the host part.
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

impl OriginRule {
    /// The rule for a listener (`loopback`: bound to a loopback address), with the extra hosts
    /// and origins allowed.
    pub fn new(loopback: bool, hosts: &[String], origins: &[String]) -> Self {
        OriginRule {
            loopback,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            origins: origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
        }
    }

    /// Checks a request's `Host` and `Origin` headers; `Err` says why it is refused.
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), String> {
        let host = host.map(|h| h.trim().to_ascii_lowercase());
        let host_ok = match &host {
            None => false,
            Some(h) => {
                self.hosts.iter().any(|a| a == h || a == host_part(h))
                    || (self.loopback && is_loopback_name(host_part(h)))
                    || (!self.loopback && self.hosts.is_empty())
            }
        };
        if !host_ok {
            return Err(format!(
                "the `Host` header `{}` is not allowed (DNS rebinding protection; see --allowed-host)",
                host.unwrap_or_default()
            ));
        }
        let Some(origin) = origin else { return Ok(()) };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return Ok(());
        }
        let loopback_origin = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| is_loopback_name(host_part(authority)));
        if self.loopback && loopback_origin {
            return Ok(());
        }
        Err(format!(
            "the `Origin` `{origin}` is not allowed (DNS rebinding protection; see --allowed-origin)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener() {
        let r = OriginRule::new(true, &[], &[]);
        assert!(r.check(Some("127.0.0.1:8080"), None).is_ok());
        assert!(r.check(Some("localhost:1"), Some("http://localhost:3000")).is_ok());
        assert!(r.check(Some("[::1]:80"), None).is_ok());
        assert!(r.check(Some("evil.example:8080"), None).is_err());
        assert!(r.check(None, None).is_err());
        assert!(r.check(Some("127.0.0.1:8080"), Some("https://evil.example")).is_err());
        assert!(r.check(Some("127.0.0.1:8080"), Some("null")).is_err());
        let r =
            OriginRule::new(true, &["gw.internal:8080".into()], &["https://app.example".into()]);
        assert!(r.check(Some("gw.internal:8080"), Some("https://app.example/")).is_ok());
        assert!(r.check(Some("gw.internal:9090"), None).is_err());
    }

    #[test]
    fn remote_listener() {
        let r = OriginRule::new(false, &[], &[]);
        assert!(r.check(Some("gw.example"), None).is_ok());
        assert!(r.check(Some("gw.example"), Some("http://localhost:3000")).is_err());
        let r = OriginRule::new(false, &["gw.example".into()], &[]);
        assert!(r.check(Some("gw.example:443"), None).is_ok());
        assert!(r.check(Some("other.example"), None).is_err());
    }
}
