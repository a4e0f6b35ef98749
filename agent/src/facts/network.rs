//! `network.*`: firewall configuration and, for a live root, listening
//! sockets. IP forwarding is a sysctl (`kernel.sysctl["net.ipv4.ip_forward"]`).
//!
//! Facts: `network.firewall.{nftables, iptables, ufw, configured}` —
//! nftables: `/etc/nftables.conf` defines a table with a chain that has a
//! hook; iptables: saved rules (`/etc/iptables/rules.v4|v6`,
//! `/etc/sysconfig/iptables`) with a rule or a DROP/REJECT policy; ufw:
//! `ENABLED=yes` in `/etc/ufw/ufw.conf`. `network.listening`: TCP sockets in
//! LISTEN and bound UDP sockets, as `tcp:0.0.0.0:22` (from
//! `/proc/1/net/*`, else `/proc/net/*`, when the root has them).

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let fw = FactPath::new(["network", "firewall"]);
    let read = |p: &str| root.read_to_string(p).ok().flatten();
    let nft = read("/etc/nftables.conf").is_some_and(|t| {
        let t = strip_comments(&t);
        t.contains("table ") && t.contains("hook ")
    });
    let ipt = ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6", "/etc/sysconfig/iptables", "/etc/sysconfig/ip6tables"].iter().any(|p| {
        read(p).is_some_and(|t| {
            t.lines().any(|l| l.starts_with("-A ") || (l.starts_with(':') && (l.contains(" DROP") || l.contains(" REJECT"))))
        })
    });
    let ufw = read("/etc/ufw/ufw.conf").is_some_and(|t| t.lines().any(|l| l.trim().eq_ignore_ascii_case("ENABLED=yes")));
    facts.set(&fw.child("nftables"), nft);
    facts.set(&fw.child("iptables"), ipt);
    facts.set(&fw.child("ufw"), ufw);
    facts.set(&fw.child("configured"), nft || ipt || ufw);
    if let Some(listening) = listening(root) {
        facts.set(&FactPath::new(["network", "listening"]), listening);
    }
}

fn strip_comments(t: &str) -> String {
    t.lines().map(|l| l.split('#').next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Listening sockets from the proc net tables (not watched: /proc has no
/// file events; full snapshots refresh it).
fn listening(root: &HostRoot) -> Option<Vec<String>> {
    let dir = ["/proc/1/net", "/proc/net"].into_iter().find(|d| root.path(&format!("{d}/tcp")).exists())?;
    let mut out = Vec::new();
    for (file, proto, v6) in [("tcp", "tcp", false), ("tcp6", "tcp", true), ("udp", "udp", false), ("udp6", "udp", true)] {
        let Ok(text) = std::fs::read_to_string(root.path(&format!("{dir}/{file}"))) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            // TCP state 0A is LISTEN; UDP 07 is an unconnected bound socket.
            let wanted = if proto == "tcp" { "0A" } else { "07" };
            if f[3] != wanted {
                continue;
            }
            if let Some(addr) = decode_addr(f[1], v6) {
                out.push(format!("{proto}:{addr}"));
            }
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// `0100007F:0016` → `127.0.0.1:22`; IPv6 as `[::1]:22`.
pub fn decode_addr(s: &str, v6: bool) -> Option<String> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !v6 {
        let n = u32::from_str_radix(ip, 16).ok()?;
        let b = n.to_le_bytes();
        return Some(format!("{}.{}.{}.{}:{port}", b[0], b[1], b[2], b[3]));
    }
    if ip.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for w in 0..4 {
        let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;

    #[test]
    fn firewall_and_sockets() {
        let f = crate::facts::testing::collect_with(
            &[
                ("/etc/nftables.conf", "#!/usr/sbin/nft -f\ntable inet filter {\n  chain input { type filter hook input priority 0; policy drop; }\n}\n"),
                ("/etc/ufw/ufw.conf", "ENABLED=no\n"),
                ("/proc/net/tcp", "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A 0\n   1: 0100007F:1F90 0100007F:C350 01 0\n"),
                ("/proc/net/tcp6", "  sl  local_address rem_address   st\n   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 0\n"),
                ("/proc/net/udp", "  sl  local_address rem_address   st\n   0: 00000000:0044 00000000:0000 07 0\n"),
            ],
            collect,
        );
        assert_eq!(f.0["network.firewall.nftables"], FactValue::Bool(true));
        assert_eq!(f.0["network.firewall.ufw"], FactValue::Bool(false));
        assert_eq!(f.0["network.firewall.configured"], FactValue::Bool(true));
        assert_eq!(
            f.0["network.listening"],
            FactValue::List(vec!["tcp:0.0.0.0:22".into(), "tcp:[::1]:22".into(), "udp:0.0.0.0:68".into()])
        );
    }

    #[test]
    fn commented_nftables_is_not_a_firewall() {
        let f =
            crate::facts::testing::collect_with(&[("/etc/nftables.conf", "# table inet filter { hook input }\nflush ruleset\n")], collect);
        assert_eq!(f.0["network.firewall.configured"], FactValue::Bool(false));
        assert!(!f.0.contains_key("network.listening"));
    }
}
