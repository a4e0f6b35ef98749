//! The compliance frameworks controls map to, and the official notation of
//! their requirement ids (checked when packs load).

use std::sync::LazyLock;

use regex::Regex;

/// A framework: the key used in packs, its display name, and the shape of
/// its requirement ids with an example.
pub struct Framework {
    pub key: &'static str,
    pub name: &'static str,
    pub id_pattern: &'static str,
    pub example: &'static str,
}

/// A NIST SP 800-53 control or enhancement id (FedRAMP's baselines use
/// the same).
const NIST_800_53_ID: &str = r"^[A-Z]{2}-[0-9]{1,2}(\([0-9]{1,2}\))?$";

pub const FRAMEWORKS: &[Framework] = &[
    Framework {
        key: "soc2",
        name: "SOC 2 (2017 TSC)",
        id_pattern: r"^(CC[1-9]\.[0-9]{1,2}|A1\.[1-3]|C1\.[12]|PI1\.[1-5]|P[1-8]\.[0-9])$",
        example: "CC6.1",
    },
    Framework {
        key: "pci-dss",
        name: "PCI DSS v4.0",
        id_pattern: r"^((1[0-2]|[1-9])(\.[0-9]{1,2}){1,4}|A[12](\.[0-9]{1,2}){1,2})$",
        example: "8.3.6",
    },
    Framework {
        key: "hipaa",
        name: "HIPAA Security Rule",
        id_pattern: r"^164\.3(0[2-9]|1[0-8])(\(([a-z]+|[0-9]+|[A-Z])\))*$",
        example: "164.312(a)(1)",
    },
    Framework { key: "iso27001", name: "ISO/IEC 27001:2022 Annex A", id_pattern: r"^A\.[5-8]\.[0-9]{1,2}$", example: "A.8.5" },
    Framework { key: "nist-csf", name: "NIST CSF 2.0", id_pattern: r"^(GV|ID|PR|DE|RS|RC)\.[A-Z]{2}-[0-9]{2}$", example: "PR.AA-01" },
    Framework { key: "nist-800-53", name: "NIST SP 800-53 rev. 5", id_pattern: NIST_800_53_ID, example: "AC-2(3)" },
    Framework { key: "fedramp-low", name: "FedRAMP rev. 5 Low", id_pattern: NIST_800_53_ID, example: "AC-2" },
    Framework { key: "fedramp-moderate", name: "FedRAMP rev. 5 Moderate", id_pattern: NIST_800_53_ID, example: "AC-2(3)" },
    Framework { key: "fedramp-high", name: "FedRAMP rev. 5 High", id_pattern: NIST_800_53_ID, example: "AC-2(12)" },
    Framework { key: "cmmc", name: "CMMC 2.0", id_pattern: r"^[A-Z]{2}\.L[1-3]-3\.[0-9]{1,2}\.[0-9]{1,2}$", example: "AC.L2-3.1.1" },
    Framework {
        key: "nerc-cip",
        name: "NERC CIP",
        id_pattern: r"^CIP-0[0-9]{2}-[0-9]+(\.[0-9]+[a-z]?)? R[0-9]+(\.[0-9]+)?$",
        example: "CIP-007-6 R5",
    },
    Framework { key: "gdpr", name: "GDPR", id_pattern: r"^Art\. [0-9]{1,2}(\([0-9]\))?$", example: "Art. 32" },
    Framework {
        key: "cis",
        name: "CIS Benchmarks (the recommendations mapped)",
        id_pattern: r"^[A-Za-z0-9 ._-]+ [0-9]+(\.[0-9]+)*$",
        example: "Debian 12 5.1.20",
    },
];

static PATTERNS: LazyLock<Vec<Regex>> =
    LazyLock::new(|| FRAMEWORKS.iter().map(|f| Regex::new(f.id_pattern).expect("framework pattern compiles")).collect());

/// Looks up a framework by its key.
pub fn framework(key: &str) -> Option<(&'static Framework, &'static Regex)> {
    FRAMEWORKS.iter().position(|f| f.key == key).map(|i| (&FRAMEWORKS[i], &PATTERNS[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_matches_its_pattern() {
        for f in FRAMEWORKS {
            let (_, re) = framework(f.key).unwrap();
            assert!(re.is_match(f.example), "{} {}", f.key, f.example);
        }
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for (k, bad) in [
            ("soc2", "CC6"),
            ("pci-dss", "8.3.6a"),
            ("pci-dss", "A4.1.1"),
            ("hipaa", "164.312a"),
            ("iso27001", "A.9.1"),
            ("nist-csf", "PR.AA-1"),
            ("nist-800-53", "AC2"),
            ("fedramp-moderate", "ac-2.3"),
            ("gdpr", "Article 32"),
        ] {
            assert!(!framework(k).unwrap().1.is_match(bad), "{k} {bad}");
        }
    }
}
