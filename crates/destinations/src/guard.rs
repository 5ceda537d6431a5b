//! Server-side request forgery guard. Destination hosts that are, or resolve to, loopback,
//! private, link-local (cloud metadata lives there), CGNAT or otherwise non-public addresses are
//! refused unless the operator allows private destinations. The check runs when a URL is saved
//! (literal addresses) and again at connect time on every resolved address, so a name that later
//! re-resolves to a private address (DNS rebinding) is still refused.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// True for addresses a destination may not use.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 is AWS metadata)
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 can reach private IPv4
                || (seg[0] == 0x2002) // 6to4 embeds an IPv4 address
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
                || (seg[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
                || (seg[0..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0) // IPv4-translated ::ffff:0:0/96
                || (seg[0] == 0x2001 && seg[1] < 0x0200) // IETF protocol assignments 2001::/23 (Teredo 2001::/32 included)
                || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0]) // discard-only 100::/64
        }
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

/// The error a refused destination produces, recognisable in a reqwest error's source chain.
#[derive(Debug, thiserror::Error)]
#[error("destination address {0} is not allowed (private, loopback, link-local or reserved); an operator can allow private destinations")]
pub struct ForbiddenAddress(pub String);

/// Checks a URL's scheme and, when its host is a literal address, the address.
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; put them in the connection's credentials".into());
    }
    let forbidden = match url.host() {
        None => return Err("must have a host".into()),
        Some(url::Host::Ipv4(ip)) => is_forbidden(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_forbidden(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            // `localhost.` is `localhost`: the trailing dot only makes the name absolute.
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    };
    if forbidden && !allow_private {
        return Err(ForbiddenAddress(url.host_str().unwrap_or_default().to_owned()).to_string());
    }
    Ok(())
}

/// A DNS resolver that drops forbidden addresses, failing when none is left.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| !is_forbidden(a.ip())).collect();
            if allowed.is_empty() {
                let shown = addrs.first().map(|a| a.ip().to_string()).unwrap_or(host);
                return Err(Box::new(ForbiddenAddress(shown)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden(s.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2001::5efe:7f00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1", "172.32.0.1"] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn literal_urls_are_checked_at_save_time() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_url(&url("http://169.254.169.254/latest/meta-data"), false).is_err());
        assert!(check_url(&url("http://[::1]:8080/"), false).is_err());
        assert!(check_url(&url("http://localhost:3000/"), false).is_err());
        assert!(check_url(&url("http://localhost.:3000/"), false).is_err());
        assert!(check_url(&url("http://api.LOCALHOST../"), false).is_err());
        assert!(check_url(&url("http://[::ffff:0:7f00:1]/"), false).is_err());
        assert!(check_url(&url("http://[2001::1]/"), false).is_err());
        assert!(check_url(&url("http://[100::1]/"), false).is_err());
        assert!(check_url(&url("http://127.0.0.1:3000/"), true).is_ok());
        assert!(check_url(&url("https://hooks.example.com/x"), false).is_ok());
        assert!(check_url(&url("ftp://example.com/"), false).is_err());
        assert!(check_url(&url("https://user:pw@example.com/"), false).is_err());
    }
}
