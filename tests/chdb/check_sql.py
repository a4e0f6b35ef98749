#!/usr/bin/env python3
"""Runs ClickHouse DDL migrations and queries in a current ClickHouse engine
(chDB, the embedded engine from the PyPI package chdb-core), so SQL written
for 18.16 is proven to work on current releases too.

usage: check_sql.py MIGRATIONS_DIR [QUERY_FILE ...]

Migrations run in order in a fresh database; each query then runs against
the migrated schema. Exits 1 naming the file and statement that failed.
"""
import re
import sys
import tempfile
from pathlib import Path


def statements(text):
    # Same splitting rule as the collector: comments stripped, statements
    # end with ';' at the end of a line.
    out, cur = [], []
    for line in text.splitlines():
        line = line.split("--", 1)[0]
        if not line.strip():
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(cur).strip().rstrip(";"))
            cur = []
    if "".join(cur).strip():
        out.append("\n".join(cur).strip())
    return out


def split_params(text):
    # Commas inside [...] or quotes don't split.
    out, cur, depth, quote = [], "", 0, False
    for ch in text:
        if ch == "'":
            quote = not quote
        if not quote and ch == "[":
            depth += 1
        if not quote and ch == "]":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        from chdb import session
    except ImportError:
        print("chdb-core is not installed: run deploy/local/services up (it installs chdb-core)", file=sys.stderr)
        return 3
    migrations = sorted(Path(sys.argv[1]).glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not migrations:
        print(f"{sys.argv[1]}: no migrations", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as d:
        s = session.Session(d)
        s.query("CREATE DATABASE IF NOT EXISTS dw")
        s.query("USE dw")
        version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
        failures = 0
        for path in migrations + [Path(p) for p in sys.argv[2:]]:
            text = path.read_text()
            params = None
            for line in text.splitlines():
                if line.startswith("-- test-params:"):
                    params = [p.strip() for p in split_params(line.split(":", 1)[1])]
            for stmt in statements(text):
                # Queries bind their parameters with `?` (the Rust client's
                # placeholders): a file's `-- test-params:` line gives
                # values in order; otherwise an instant in seconds fits.
                if params is not None:
                    parts = stmt.split("?")
                    stmt = parts[0] + "".join(params[i] + parts[i + 1] for i in range(len(parts) - 1))
                else:
                    stmt = stmt.replace("?", "1767225600")
                try:
                    s.query(stmt)
                except Exception as e:  # chdb raises a plain RuntimeError
                    failures += 1
                    first = stmt.splitlines()[0]
                    print(f"{path}: {first}: {str(e).splitlines()[0]}", file=sys.stderr)
        tables = str(s.query("SELECT count() FROM system.tables WHERE database = 'dw'", "CSV")).strip()
        print(f"chdb {version}: {len(migrations)} migrations, {len(sys.argv) - 2} query files, {tables} tables, {failures} failures")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
