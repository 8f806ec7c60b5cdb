//! Which hosts tasks may reach: the operator's allow and deny lists (`--allow-hosts`,
//! `--deny-hosts`) and the built-in refusal of link-local addresses (169.254.0.0/16 and
//! fe80::/10, where cloud metadata services answer), lifted by `--allow-link-local`.
//!
//! An entry is a host name (`api.example.com`), a wildcard for its subdomains
//! (`*.example.com`, not `example.com` itself), an IP address or a CIDR block
//! (`10.0.0.0/8`). Deny wins over allow; an empty allow list allows every host.
//!
//! Names are checked against name entries, IP literals against address entries. The addresses
//! a name resolves to are checked too, by [`PolicyResolver`] (the HTTP client's resolver):
//! link-local addresses and denied blocks are dropped before connecting, so a name cannot
//! smuggle a request to a refused address. Redirects are checked like the first URL.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// One entry of an allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// This host name exactly.
    Name(String),
    /// Any subdomain of the name (stored with its leading dot: `.example.com`).
    Subdomains(String),
    /// Addresses in this block (a single address is a block of full length).
    Block { net: IpAddr, bits: u8 },
}

/// An entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host list entry {entry:?}: {reason}")]
pub struct PatternError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Why a host or address is not reached. Travels through the HTTP client's error chain (from
/// the resolver or the redirect policy), where the provider finds it again to answer GZ2023.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is refused: {reason}")]
pub struct Refusal {
    /// The host or address refused.
    pub host: String,
    /// Which rule refused it.
    pub reason: &'static str,
}

/// The operator's rules.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    allow_link_local: bool,
    /// The lists as given, for the provider's metadata.
    allow_text: Vec<String>,
    deny_text: Vec<String>,
}

fn parse_pattern(entry: &str) -> Result<Pattern, PatternError> {
    let e = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    let fail = |reason| PatternError {
        entry: entry.to_string(),
        reason,
    };
    if let Some((addr, bits)) = e.split_once('/') {
        let net: IpAddr = addr
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| fail("not an IP address before the `/`"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| fail("the prefix length must be within 0..=32 (IPv4) or 0..=128"))?;
        return Ok(Pattern::Block { net, bits });
    }
    if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(Pattern::Block { net: ip, bits });
    }
    let (name, wildcard) = match e.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (e.as_str(), false),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        return Err(fail(
            "expected a host name, `*.` and a domain, an IP address or a CIDR block",
        ));
    }
    Ok(if wildcard {
        Pattern::Subdomains(format!(".{name}"))
    } else {
        Pattern::Name(name.to_string())
    })
}

/// Whether `ip` lies in `net`/`bits`.
fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:169.254.169.254`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// 169.254.0.0/16 and fe80::/10.
fn is_link_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn name_matches(pattern: &Pattern, host: &str) -> bool {
    match pattern {
        Pattern::Name(n) => n == host,
        Pattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
        Pattern::Block { .. } => false,
    }
}

fn ip_matches(pattern: &Pattern, ip: IpAddr) -> bool {
    match pattern {
        Pattern::Block { net, bits } => in_block(ip, *net, *bits),
        Pattern::Name(_) | Pattern::Subdomains(_) => false,
    }
}

impl HostPolicy {
    /// The rules from the two lists (entries as described in the module doc).
    ///
    /// # Errors
    ///
    /// The first entry that cannot be read.
    pub fn new(
        allow: &[String],
        deny: &[String],
        allow_link_local: bool,
    ) -> Result<HostPolicy, PatternError> {
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect()
        };
        let (allow_text, deny_text) = (clean(allow), clean(deny));
        Ok(HostPolicy {
            allow: allow_text
                .iter()
                .map(|e| parse_pattern(e))
                .collect::<Result<_, _>>()?,
            deny: deny_text
                .iter()
                .map(|e| parse_pattern(e))
                .collect::<Result<_, _>>()?,
            allow_link_local,
            allow_text,
            deny_text,
        })
    }

    /// Whether a URL's host (a name or an IP literal, IPv6 with or without brackets) may be
    /// reached.
    ///
    /// # Errors
    ///
    /// The rule that refuses it.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            self.check_address(ip)?;
            if !self.allow.is_empty() && !self.allow.iter().any(|p| ip_matches(p, ip)) {
                return Err(refusal(&host, "not in the allowed hosts (--allow-hosts)"));
            }
            return Ok(());
        }
        if self.deny.iter().any(|p| name_matches(p, &host)) {
            return Err(refusal(&host, "denied (--deny-hosts)"));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| name_matches(p, &host)) {
            return Err(refusal(&host, "not in the allowed hosts (--allow-hosts)"));
        }
        Ok(())
    }

    /// Whether a connection to `ip` may be made (a resolved address or an IP literal):
    /// link-local addresses unless allowed, and denied blocks, are refused.
    ///
    /// # Errors
    ///
    /// The rule that refuses it.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        let shown = canonical(ip).to_string();
        if is_link_local(ip) && !self.allow_link_local {
            return Err(refusal(
                &shown,
                "link-local addresses (cloud metadata) are refused unless --allow-link-local",
            ));
        }
        if self.deny.iter().any(|p| ip_matches(p, ip)) {
            return Err(refusal(&shown, "denied (--deny-hosts)"));
        }
        Ok(())
    }

    /// The rules as given, for the provider's registration metadata.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "allow_hosts": self.allow_text,
            "deny_hosts": self.deny_text,
            "allow_link_local": self.allow_link_local,
        })
    }
}

fn refusal(host: &str, reason: &'static str) -> Refusal {
    Refusal {
        host: host.to_string(),
        reason,
    }
}

/// The HTTP client's resolver: the system's lookup, keeping only addresses the policy
/// allows. A name whose every address is refused fails with the [`Refusal`].
pub struct PolicyResolver(pub Arc<HostPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check_address(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused = Some(Refusal {
                            host: format!("{host} ({})", r.host),
                            reason: r.reason,
                        });
                        false
                    }
                })
                .collect();
            match refused {
                Some(r) if kept.is_empty() => Err(Box::new(r) as Box<_>),
                _ => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> HostPolicy {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        HostPolicy::new(&list(allow), &list(deny), false).unwrap()
    }

    #[test]
    fn everything_but_link_local_is_allowed_by_default() {
        let p = policy(&[], &[]);
        assert!(p.check_host("example.com").is_ok());
        assert!(p.check_host("127.0.0.1").is_ok());
        assert!(p.check_host("[::1]").is_ok());
        assert!(p.check_host("169.254.169.254").is_err());
        assert!(p.check_host("[fe80::1]").is_err());
        assert!(p
            .check_address("::ffff:169.254.169.254".parse().unwrap())
            .is_err());
        let open = HostPolicy::new(&[], &[], true).unwrap();
        assert!(open.check_host("169.254.169.254").is_ok());
    }

    #[test]
    fn wildcards_match_subdomains_only_and_deny_wins() {
        let p = policy(
            &["*.example.com", "api.other.org", "10.0.0.0/8"],
            &["secret.example.com"],
        );
        assert!(p.check_host("a.example.com").is_ok());
        assert!(p.check_host("A.B.Example.COM.").is_ok());
        assert!(p.check_host("example.com").is_err());
        assert!(p.check_host("badexample.com").is_err());
        assert!(p.check_host("secret.example.com").is_err());
        assert!(p.check_host("api.other.org").is_ok());
        assert!(p.check_host("10.1.2.3").is_ok());
        assert!(p.check_host("11.1.2.3").is_err());
    }

    #[test]
    fn denied_blocks_refuse_literals_and_resolved_addresses() {
        let p = policy(&[], &["10.0.0.0/8", "fd00::/8", "localhost"]);
        assert!(p.check_host("10.9.9.9").is_err());
        assert!(p.check_address("10.0.0.1".parse().unwrap()).is_err());
        assert!(p.check_address("fd12::1".parse().unwrap()).is_err());
        assert!(p.check_address("192.168.1.1".parse().unwrap()).is_ok());
        assert_eq!(
            p.check_host("localhost").unwrap_err().reason,
            "denied (--deny-hosts)"
        );
    }

    #[test]
    fn unreadable_entries_are_reported() {
        let list = |s: &str| vec![s.to_string()];
        for bad in ["10.0.0.0/33", "http://x", "*.", "a..b", "x/y"] {
            assert!(HostPolicy::new(&list(bad), &[], false).is_err(), "{bad}");
        }
        let blanks = [" ".to_string(), String::new()];
        assert!(HostPolicy::new(&blanks, &blanks, false).is_ok());
    }
}
