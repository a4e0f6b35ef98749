//! The rpm database (`/var/lib/rpm/rpmdb.sqlite`, RPM ≥ 4.16: Fedora 33+,
//! RHEL 9, SUSE 15.4+): installed packages from the `Packages` table,
//! whose `blob` column is an RPM header (rpm's `headerExport` format:
//! index count and data length, 16-byte index entries, then the data).
//! Opened read-only and immutable, so rpm is never disturbed.

use std::path::Path;

/// Name and EVR of one installed package.
#[derive(Debug, Clone, PartialEq)]
pub struct RpmPackage {
    pub name: String,
    /// `[epoch:]version-release`
    pub version: String,
    pub arch: String,
}

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
/// A header bigger than this is not believed (rpm's own limit is 256 MiB
/// for all data; per package far less).
const MAX_INDEX: usize = 100_000;

/// Reads every package of the database at `path`.
pub fn read_db(path: &Path) -> Result<Vec<RpmPackage>, String> {
    let uri = format!("file:{}?immutable=1", path.display());
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(uri, flags).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, blob) in rows.enumerate() {
        let blob = blob.map_err(|e| format!("{}: row {i}: {e}", path.display()))?;
        out.push(parse_header(&blob).map_err(|e| format!("{}: package {i}: {e}", path.display()))?);
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| format!("header truncated at byte {at}"))
}

/// Decodes the tags Driftwatch needs from one header blob.
pub fn parse_header(b: &[u8]) -> Result<RpmPackage, String> {
    let il = be32(b, 0)? as usize;
    let dl = be32(b, 4)? as usize;
    if il == 0 || il > MAX_INDEX {
        return Err(format!("implausible index count {il}"));
    }
    let data_start = 8 + il * 16;
    let data = b.get(data_start..data_start + dl).ok_or("header data shorter than declared")?;
    let (mut name, mut version, mut release, mut arch, mut epoch) = (None, None, None, None, None);
    for i in 0..il {
        let e = 8 + i * 16;
        let (tag, ty, off) = (be32(b, e)?, be32(b, e + 4)?, be32(b, e + 8)? as usize);
        let string = || -> Result<String, String> {
            let s = data.get(off..).ok_or("string offset out of range")?;
            let end = s.iter().position(|&c| c == 0).ok_or("unterminated string")?;
            Ok(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        match (tag, ty) {
            (TAG_NAME, TYPE_STRING) => name = Some(string()?),
            (TAG_VERSION, TYPE_STRING) => version = Some(string()?),
            (TAG_RELEASE, TYPE_STRING) => release = Some(string()?),
            (TAG_ARCH, TYPE_STRING) => arch = Some(string()?),
            (TAG_EPOCH, TYPE_INT32) => epoch = Some(be32(data, off)?),
            _ => {}
        }
    }
    let name = name.ok_or("no NAME tag")?;
    let evr = format!("{}-{}", version.unwrap_or_default(), release.unwrap_or_default());
    Ok(RpmPackage {
        name,
        version: match epoch {
            Some(e) if e > 0 => format!("{e}:{evr}"),
            _ => evr,
        },
        arch: arch.unwrap_or_default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a header blob the way rpm exports it.
    pub fn header(tags: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, value) in tags {
            if *ty == TYPE_INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            for v in [*tag, *ty, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(value);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&(tags.len() as u32).to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend(index);
        b.extend(data);
        b
    }

    pub fn package(name: &str, version: &str, release: &str, epoch: Option<u32>) -> Vec<u8> {
        let s = |x: &str| [x.as_bytes(), &[0]].concat();
        let mut tags = vec![
            (TAG_NAME, TYPE_STRING, s(name)),
            (TAG_VERSION, TYPE_STRING, s(version)),
            (TAG_RELEASE, TYPE_STRING, s(release)),
            (TAG_ARCH, TYPE_STRING, s("x86_64")),
        ];
        if let Some(e) = epoch {
            tags.push((TAG_EPOCH, TYPE_INT32, e.to_be_bytes().to_vec()));
        }
        header(&tags)
    }

    /// Writes an rpmdb.sqlite with these packages.
    pub fn write_db(path: &Path, blobs: &[Vec<u8>]) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)", []).unwrap();
        for b in blobs {
            c.execute("INSERT INTO Packages (blob) VALUES (?1)", [b]).unwrap();
        }
    }

    #[test]
    fn reads_packages_from_an_rpmdb() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("rpmdb.sqlite");
        write_db(&db, &[package("openssh-server", "8.7p1", "38.el9", None), package("shadow-utils", "4.9", "8.el9", Some(2))]);
        let p = read_db(&db).unwrap();
        assert_eq!(p[0], RpmPackage { name: "openssh-server".into(), version: "8.7p1-38.el9".into(), arch: "x86_64".into() });
        assert_eq!(p[1].version, "2:4.9-8.el9");
    }

    #[test]
    fn corrupt_headers_are_errors() {
        assert!(parse_header(&[0, 0, 0, 9]).is_err());
        assert!(parse_header(&[0xff; 64]).unwrap_err().contains("implausible"));
        let mut h = package("x", "1", "1", None);
        h.truncate(h.len() - 3);
        assert!(parse_header(&h).is_err());
        for n in 0..40 {
            let _ = parse_header(&package("abc", "1", "2", Some(1))[..n]);
        }
    }
}
