//! `collector-bench`: the collector against a bare consumer, in one run, on
//! the same broker and the same messages. Prints figures; it is not a test.
//!
//! 1. `loadgen` preloads a backlog (a seeded fleet: full snapshots, deltas,
//!    audit events, probe results) into fresh topics.
//! 2. The ceiling: a bare rdkafka consumer (this binary, `bare`) reads the
//!    whole backlog and only decodes it.
//! 3. The collector (`driftwatch-collector run`, the repository's 216
//!    controls, a fresh ClickHouse database) consumes the same backlog:
//!    decode, evaluate, store, alert.
//!
//!    Then the periodic full snapshot: with the collector running on,
//!    every asset sends a full snapshot again (`loadgen --only-fulls`),
//!    its facts unchanged but for the backlog's deltas: CPU per record
//!    against the bare consumer's decoding of the same records, and rows
//!    written per snapshot (issue 31: at most 5).
//! 4. Steady state: the collector is stopped, `loadgen` continues the same
//!    fleet (deltas, audit events, probe results: no first snapshots) into
//!    a second backlog, the bare consumer reads just that part (from the
//!    offsets where it starts) and the collector, restarted, consumes it
//!    with every asset's posture restored. The first phase is the
//!    first-snapshot storm of a new fleet; this one, what a running fleet
//!    sends.
//! 5. Live: with the collector caught up, `loadgen` produces at a fixed rate
//!    for the same assets (deltas, audit events, probe results; no second
//!    round of full snapshots) and a local webhook takes the alerts; produce-to-webhook latency is
//!    the alert's arrival minus the snapshot's collection time (stamped by
//!    loadgen as it produces). The bare consumer reads the same records
//!    beside the collector: both rates at this load, the broker's part of
//!    the latency (a record's age when the bare consumer gets it) and the
//!    collector's (the alert's arrival minus its snapshot's arrival at the
//!    bare consumer).
//!
//! Both consumers are child processes, measured the same way from /proc:
//! CPU time (utime + stime) and peak RSS (VmHWM); rates from first record
//! to last.
//!
//!   deploy/local/services up
//!   cargo build --release -p driftwatch-collector -p driftwatch-tests --bins
//!   target/release/collector-bench [--assets 10000] [--backlog-rate 20000 --backlog-seconds 10]
//!                                  [--steady-seconds 10] [--live-rate 10000 --live-seconds 30] [--seed 42]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message as _;

const USAGE: &str = "usage: collector-bench [--brokers HOST:PORT] [--clickhouse URL] [--assets N] [--backlog-rate N] [--backlog-seconds S]
                       [--steady-seconds S (0: no steady phase)] [--live-rate N] [--live-seconds S] [--partitions N] [--seed N]
                       [--max-wait-ms N] [--linger-ms N] (batch.max_wait_ms, batch.linger_ms; the collector's defaults) [--fetch-wait-ms 100 (fetch.wait.max.ms)]
                       [--producer-linger-ms 20 (loadgen's linger.ms; 20 is the agent's)]
                       [--keep-database] (leave the run's ClickHouse database, to look at what was stored)
       (the collector logs at warn into <tmp>/bench<time>/collector.log; DRIFTWATCH_BENCH_LOG=info for more)
       collector-bench bare --brokers HOST:PORT --prefix P --expect N [--from TOPIC:PARTITION:OFFSET,...]
                       [--fetch-wait-ms N] [--receipts FILE]
                       (the ceiling, run by the benchmark itself)";

struct Args {
    brokers: String,
    clickhouse: String,
    assets: u64,
    backlog_rate: u64,
    backlog_seconds: u64,
    /// Seconds of the steady-state backlog (at `backlog_rate`).
    steady_seconds: u64,
    live_rate: u64,
    live_seconds: u64,
    partitions: u64,
    seed: u64,
    /// The collector's `batch.max_wait_ms`, `batch.linger_ms` and `fetch.wait.max.ms`.
    max_wait_ms: u64,
    linger_ms: u64,
    fetch_wait_ms: u64,
    /// Leave the run's ClickHouse database in place.
    keep_database: bool,
    /// loadgen's `linger.ms` (the agent's 20 unless told).
    producer_linger_ms: u64,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let batch = driftwatch_collector::config::BatchConfig::default();
    let mut a = Args {
        brokers: "127.0.0.1:9092".into(),
        clickhouse: "http://127.0.0.1:8123".into(),
        assets: 10_000,
        backlog_rate: 20_000,
        backlog_seconds: 10,
        steady_seconds: 10,
        live_rate: 10_000,
        live_seconds: 30,
        partitions: 3,
        seed: 42,
        // The collector's own defaults: the benchmark measures what ships.
        max_wait_ms: batch.max_wait_ms,
        linger_ms: batch.linger_ms,
        fetch_wait_ms: 100,
        keep_database: false,
        producer_linger_ms: 20,
    };
    while let Some(flag) = it.next() {
        if flag == "--keep-database" {
            a.keep_database = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag}: a value is missing"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--brokers" => a.brokers = value,
            "--clickhouse" => a.clickhouse = value,
            "--assets" => a.assets = num(&value)?,
            "--backlog-rate" => a.backlog_rate = num(&value)?.max(1),
            "--backlog-seconds" => a.backlog_seconds = num(&value)?,
            "--steady-seconds" => a.steady_seconds = num(&value)?,
            "--live-rate" => a.live_rate = num(&value)?.max(1),
            "--live-seconds" => a.live_seconds = num(&value)?,
            "--partitions" => a.partitions = num(&value)?.max(1),
            "--seed" => a.seed = num(&value)?,
            "--max-wait-ms" => a.max_wait_ms = num(&value)?.max(1),
            "--linger-ms" => a.linger_ms = num(&value)?,
            "--fetch-wait-ms" => a.fetch_wait_ms = num(&value)?.max(1),
            "--producer-linger-ms" => a.producer_linger_ms = num(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The ceiling: consume `prefix.*` from the start (or from the offsets of
/// `--from`) and decode `--expect` records (or as many as come before a
/// minute without any). Prints `bare <count> <first record,
/// unix ms> <last record, unix ms> <undecodable> <age p50 ms> <age p99 ms>`,
/// a record's age being its receipt minus its Kafka timestamp (what the
/// broker and the producer's queue add). With `--receipts FILE`, writes
/// when each snapshot arrived (`asset <TAB> collected ms <TAB> received ms`)
/// for the live phase to tell the collector's part of an alert's latency.
fn bare(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut brokers, mut prefix, mut expect, mut from) = (String::new(), String::new(), 0u64, String::new());
    let (mut receipts_file, mut fetch_wait) = (None::<PathBuf>, "100".to_string());
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag}: a value is missing"))?;
        match flag.as_str() {
            "--brokers" => brokers = v,
            "--prefix" => prefix = v,
            "--expect" => expect = v.parse().map_err(|_| format!("--expect: {v:?}"))?,
            "--from" => from = v,
            "--receipts" => receipts_file = Some(PathBuf::from(v)),
            "--fetch-wait-ms" => fetch_wait = v,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{prefix}-bare"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // As the collector's: records reach both as soon.
        .set("fetch.wait.max.ms", &fetch_wait)
        .create()
        .map_err(|e| e.to_string())?;
    let topics = [format!("{prefix}.snapshots"), format!("{prefix}.audit"), format!("{prefix}.sla")];
    if from.is_empty() {
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    } else {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for item in from.split(',') {
            let bad = || format!("--from: {item:?} is not TOPIC:PARTITION:OFFSET");
            let mut f = item.rsplitn(3, ':');
            let (offset, partition, topic) = (f.next().ok_or_else(bad)?, f.next().ok_or_else(bad)?, f.next().ok_or_else(bad)?);
            let (partition, offset) = (partition.parse().map_err(|_| bad())?, offset.parse().map_err(|_| bad())?);
            tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset)).map_err(|e| e.to_string())?;
        }
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
    }
    let decoder = driftwatch_schemas::Decoder::new().map_err(|e| e.to_string())?;
    let (mut count, mut first, mut failed) = (0u64, 0i64, 0u64);
    let (mut ages, mut receipts) = (Vec::with_capacity(expect as usize), String::new());
    // Gives up after 60 s without a record (what it counted is printed).
    let mut last_record = Instant::now();
    while count < expect && last_record.elapsed() < Duration::from_secs(60) {
        let Some(r) = consumer.poll(Duration::from_millis(100)) else { continue };
        last_record = Instant::now();
        let m = r.map_err(|e| e.to_string())?;
        let received = now_ms();
        let stream = match m.topic().rsplit('.').next() {
            Some("snapshots") => driftwatch_schemas::Stream::Snapshots,
            Some("audit") => driftwatch_schemas::Stream::Audit,
            _ => driftwatch_schemas::Stream::Sla,
        };
        match decoder.decode(stream, m.payload().unwrap_or_default()) {
            Ok(driftwatch_schemas::Message::Snapshot(s)) if receipts_file.is_some() => {
                receipts.push_str(&format!("{}\t{}\t{received}\n", s.asset.id, s.collected_at.timestamp_millis()));
            }
            Ok(_) => {}
            Err(_) => failed += 1,
        }
        if let Some(t) = m.timestamp().to_millis() {
            ages.push((received - t) as f64);
        }
        if count == 0 {
            first = received;
        }
        count += 1;
    }
    let last = now_ms();
    if let Some(path) = receipts_file {
        std::fs::write(&path, receipts).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    ages.sort_by(|x, y| x.total_cmp(y));
    // Its own CPU and peak RSS: the bench may only look once it has exited.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    println!("bare {count} {first} {last} {failed} {:.0} {:.0} {cpu_ms} {}", percentile(&ages, 0.5), percentile(&ages, 0.99), ru.ru_maxrss);
    Ok(())
}

/// CPU seconds used and peak RSS (MB) of a process, from /proc.
fn usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field, stime the 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0;
    Some((cpu, hwm))
}

/// CPU seconds used so far by the services the collector leans on:
/// ClickHouse (processes named `clickhouse*`) and the broker (`tansu*`),
/// found by name in /proc so that it does not matter who started them.
fn services_cpu() -> (f64, f64) {
    let (mut clickhouse, mut broker) = (0.0, 0.0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let total = if comm.starts_with("clickhouse") {
            &mut clickhouse
        } else if comm.starts_with("tansu") {
            &mut broker
        } else {
            continue;
        };
        *total += usage(pid).map(|u| u.0).unwrap_or_default();
    }
    (clickhouse, broker)
}

/// CPU seconds the whole machine has been busy (all cores: every
/// /proc/stat time but idle and iowait), to tell a saturated box.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let f: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal …
    let busy: f64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / ticks
}

/// A metric's value summed over its label sets, from Prometheus text.
fn metric(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP/1.0 request on loopback; the response body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n{body}", body.len()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string()).or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// The collector's histograms of the stages on a record's way to a page,
/// as the live phase prints them.
const STAGES: [(&str, &str); 4] = [
    ("driftwatch_record_age_seconds", "record age at receipt"),
    ("driftwatch_batch_wait_seconds", "batch wait"),
    ("driftwatch_store_seconds", "store"),
    ("driftwatch_notification_seconds", "delivery"),
];

fn scrape(port: u16) -> Option<String> {
    http(&format!("127.0.0.1:{port}"), "GET", "/metrics", "")
}

fn run_loadgen(bin: &Path, a: &Args, prefix: &str, rate: u64, seconds: u64, seed: u64, extra: &[&str]) -> Result<String, String> {
    let out = Command::new(bin.join("loadgen"))
        .args(["--brokers", &a.brokers, "--prefix", prefix, "--assets", &a.assets.to_string()])
        .args(["--rate", &rate.to_string(), "--seconds", &seconds.to_string(), "--seed", &seed.to_string()])
        .args(["--linger-ms", &a.producer_linger_ms.to_string()])
        .args(extra)
        .output()
        .map_err(|e| format!("loadgen: {e}"))?;
    if !out.status.success() {
        return Err(format!("loadgen failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A violation alert's first arrival at the webhook (unix ms).
struct Arrival {
    /// The alert's start: its snapshot's collection, stamped as produced.
    start: i64,
    arrived: i64,
    asset: String,
}

/// First arrivals, and the alert instances already seen (a group's later
/// notifications list its alerts again).
type Arrivals = Mutex<(Vec<Arrival>, std::collections::HashSet<String>)>;

/// A webhook that notes each violation alert's produce-to-arrival latency.
fn webhook(latencies: Arc<Arrivals>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the webhook");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let latencies = latencies.clone();
            std::thread::spawn(move || serve(stream, &latencies));
        }
    });
    port
}

/// One HTTP/1.1 connection: POSTs with a JSON body, answered 200.
fn serve(mut s: std::net::TcpStream, latencies: &Arrivals) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(s.try_clone().expect("clone the stream"));
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let arrived = now_ms();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            for a in v["alerts"].as_array().into_iter().flatten() {
                if a["status"] == "firing" && a["labels"]["alertname"] == "violation" {
                    let (Some(t), Some(instance)) =
                        (a["startsAt"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()), a["instance"].as_str())
                    else {
                        continue;
                    };
                    let asset = a["labels"]["asset"].as_str().unwrap_or_default().to_string();
                    let mut l = latencies.lock().expect("lock");
                    if l.1.insert(instance.to_string()) {
                        l.0.push(Arrival { start: t.timestamp_millis(), arrived, asset });
                    }
                }
            }
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}

fn main() -> std::process::ExitCode {
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().is_some_and(|a| a == "bare") {
        it.next();
        return match bare(it) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("collector-bench bare: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if it.peek().is_some_and(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let a = match parse(it) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("collector-bench: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match bench(&a) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collector-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(a: &Args) -> Result<(), String> {
    let bin: PathBuf = std::env::current_exe().map_err(|e| e.to_string())?.parent().ok_or("no binary directory")?.to_path_buf();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no repository")?.to_path_buf();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let (prefix, database) = (format!("bench{stamp}"), format!("bench_{stamp}"));
    let work = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let latencies: Arc<Arrivals> = Arc::new(Mutex::new(Default::default()));
    let hook = webhook(latencies.clone());
    let api = driftwatch_tests::free_port();
    let config = work.join("collector.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  brokers: \"{b}\"\n  group_id: {prefix}-collector\n  topics: {{snapshots: {prefix}.snapshots, audit: {prefix}.audit, sla: {prefix}.sla, dead_letter: {prefix}.dead-letter}}\n\
               \x20\x20properties: {{fetch.wait.max.ms: \"{fetch_wait}\"}}\nclickhouse: {{url: \"{ch}\", database: {database}}}\npolicies: {policies}\nbatch: {{max_messages: 5000, max_wait_ms: {max_wait}, linger_ms: {linger}}}\n\
             alerts:\n  receivers: [{{name: bench, webhook: {{url: \"http://127.0.0.1:{hook}/hook\"}}, rate_limit_per_minute: 1000000}}]\n  route: {{receiver: bench, group_by: [\"...\"], group_wait: 0s, group_interval: 1s}}\n\
             api: {{listen: \"127.0.0.1:{api}\"}}\n",
            b = a.brokers,
            ch = a.clickhouse,
            fetch_wait = a.fetch_wait_ms,
            max_wait = a.max_wait_ms,
            linger = a.linger_ms,
            policies = repo.join("policies").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let collector = bin.join("driftwatch-collector");
    let status = Command::new(&collector)
        .args(["topics", "--brokers", &a.brokers, "--partitions", &a.partitions.to_string(), "--config"])
        .arg(&config)
        .status()
        .map_err(|e| format!("{}: {e} (build it: cargo build --release -p driftwatch-collector)", collector.display()))?;
    if !status.success() {
        return Err("creating the topics failed".into());
    }

    // 1. The backlog.
    let sent = run_loadgen(&bin, a, &prefix, a.backlog_rate, a.backlog_seconds, a.seed, &[])?;
    let total = a.assets + a.backlog_rate * a.backlog_seconds;
    println!("backlog: {sent}");

    // 2. The ceiling (partitions assigned from offset 0, as in step 4:
    //    no group join inside the measured time).
    let storm_bare = run_bare(a, &prefix, total, &offsets(a, &prefix, false)?)?;

    // 3. The collector on the same backlog.
    let mut coll = start_collector(&collector, &config, &work)?;
    let storm = measure(&mut coll, api, total, &work, &a.clickhouse)?;

    // 3b. The periodic full snapshot: every asset sends its facts whole
    //     again, unchanged but for the backlog's deltas (stored already),
    //     to the same running collector. Both consumers on just that part.
    let backlog = a.backlog_rate * a.backlog_seconds;
    let fulls_at = backlog.to_string();
    //     The collector takes them as they come: its counters from before
    //     the producer starts to when it has stored them.
    let from = offsets(a, &prefix, true)?;
    let before = Counters::settled(coll.id(), api, &a.clickhouse);
    let sent =
        run_loadgen(&bin, a, &prefix, a.backlog_rate, 0, a.seed, &["--resume-after", &fulls_at, "--fulls-at", &fulls_at, "--only-fulls"])?;
    println!("full snapshots again: {sent}");
    let fulls_bare = run_bare(a, &prefix, a.assets, &from)?;
    let fulls = Counters::after(coll.id(), api, &a.clickhouse, total + a.assets)?.minus(&before);

    // 4. Steady state: the collector stopped, the same fleet continued into
    //    a second backlog, both consumers on just that part.
    let steady_total = a.backlog_rate * a.steady_seconds;
    let steady = if steady_total > 0 {
        stop(&mut coll);
        let from = offsets(a, &prefix, true)?;
        let resume = (a.backlog_rate * a.backlog_seconds).to_string();
        let sent =
            run_loadgen(&bin, a, &prefix, a.backlog_rate, a.steady_seconds, a.seed, &["--resume-after", &resume, "--fulls-at", &fulls_at])?;
        println!("steady backlog: {sent}");
        let bare = run_bare(a, &prefix, steady_total, &from)?;
        coll = start_collector(&collector, &config, &work)?;
        Some((bare, measure(&mut coll, api, steady_total, &work, &a.clickhouse)?))
    } else {
        None
    };
    let pid = coll.id();
    let mut peak_rss = steady.as_ref().map_or(storm.rss, |(_, m)| m.rss.max(storm.rss));

    // 4. Live: a fixed rate, alerts timed at the webhook; beside the
    //    collector, the bare consumer reads the same records as they come
    //    (the broker's own delay, and when each snapshot was there to take).
    //    Once ClickHouse has merged what the backlog left (the live phase
    //    would pay for the storm's merges otherwise).
    std::thread::sleep(Duration::from_secs(2));
    let ch = a.clickhouse.trim_start_matches("http://").trim_end_matches('/');
    let settle = Instant::now();
    let merging = || {
        let q = format!("SELECT count() FROM system.merges WHERE database = '{database}'");
        http(ch, "POST", "/", &q).and_then(|b| b.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    while merging() > 0 && settle.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let settled = settle.elapsed().as_secs_f64();
    let live_total = a.live_rate * a.live_seconds;
    let receipts = work.join("receipts.tsv");
    let live_bare = spawn_bare(a, &prefix, live_total, &offsets(a, &prefix, true)?, Some(&receipts))?;
    let live_from_ms = now_ms();
    let live_start = Instant::now();
    // The collector's own timing of each stage on a record's way to a page
    // (count and sum of each histogram), before and after the phase.
    let stages = || {
        let t = scrape(api).unwrap_or_default();
        STAGES.map(|(name, _)| (metric(&t, &format!("{name}_count"), ""), metric(&t, &format!("{name}_sum"), "")))
    };
    let stages_before = stages();
    let cpu_before = (usage(pid).unwrap_or_default().0, services_cpu(), machine_busy());
    let scraper = {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop2, series) = (stop.clone(), Arc::new(Mutex::new(Vec::new())));
        let series2 = series.clone();
        let handle = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(t) = scrape(api) {
                    series2.lock().expect("lock").push((live_start.elapsed().as_secs_f64(), metric(&t, "driftwatch_consumer_lag", "")));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        (stop, series, handle)
    };
    // The same fleet, continued: deltas, audit events and probes only.
    let resume = (a.backlog_rate * (a.backlog_seconds + a.steady_seconds)).to_string();
    let live = run_loadgen(&bin, a, &prefix, a.live_rate, a.live_seconds, a.seed, &["--resume-after", &resume, "--fulls-at", &fulls_at])?;
    let live_secs = live_start.elapsed().as_secs_f64();
    // Let the collector catch up and the last alerts arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut caught_up = None;
    // What the collector's counter held before the phase (it restarted for the steady phase).
    let counted_before = if steady.is_some() { steady_total } else { total + a.assets };
    while Instant::now() < deadline {
        let decoded = scrape(api).map(|t| metric(&t, "driftwatch_records_total", "outcome=\"decoded\"")).unwrap_or_default();
        if decoded >= (counted_before + live_total) as f64 {
            caught_up = Some(live_start.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let live_bare = finish_bare(live_bare)?;
    let stages_after = stages();
    // From the phase's start to now (the collector caught up, its last
    // alerts in).
    let cpu_secs = live_start.elapsed().as_secs_f64();
    let ((coll_cpu, live_rss), services, busy) = (usage(pid).unwrap_or_default(), services_cpu(), machine_busy());
    scraper.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = scraper.2.join();
    peak_rss = f64::max(peak_rss, live_rss);
    let _ = coll.kill();
    let _ = coll.wait();
    if a.keep_database {
        eprintln!("collector-bench: ClickHouse database {database} kept");
    } else {
        let _ = http(ch, "POST", "/", &format!("DROP DATABASE IF EXISTS {database}"));
    }

    // Only alerts of snapshots produced in the live phase: the backlog's waited in Kafka by design.
    let arrivals = std::mem::take(&mut latencies.lock().expect("lock").0);
    let live_alerts: Vec<&Arrival> = arrivals.iter().filter(|x| x.start >= live_from_ms).collect();
    let mut lat: Vec<f64> = live_alerts.iter().map(|x| (x.arrived - x.start) as f64).collect();
    lat.sort_by(|x, y| x.total_cmp(y));
    // The collector's part: from the snapshot's arrival at the bare
    // consumer (when the broker had it to give) to the alert's arrival.
    let received: std::collections::HashMap<(String, i64), i64> = std::fs::read_to_string(&receipts)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(((f.next()?.to_string(), f.next()?.parse().ok()?), f.next()?.parse().ok()?))
        })
        .collect();
    let mut own: Vec<f64> =
        live_alerts.iter().filter_map(|x| Some((x.arrived - received.get(&(x.asset.clone(), x.start))?) as f64)).collect();
    own.sort_by(|x, y| x.total_cmp(y));
    let live_series = scraper.1.lock().expect("lock").clone();
    println!();
    println!(
        "collector-bench: {total} messages ({} assets, seed {}), {} partitions per topic, batch.max_wait_ms {}, linger_ms {}, fetch.wait.max.ms {}, \
         the producer's linger.ms {}",
        a.assets, a.seed, a.partitions, a.max_wait_ms, a.linger_ms, a.fetch_wait_ms, a.producer_linger_ms
    );
    println!("first snapshots of a new fleet ({total} messages, {} of them full snapshots):", a.assets);
    report(&storm_bare, &storm, a.assets);
    println!("the periodic full snapshot, unchanged ({} messages: a full snapshot of every asset, the collector running on):", a.assets);
    let per_k = |x: f64, n: i64| x / (n.max(1) as f64) * 1000.0 * 1000.0;
    println!(
        "  CPU per 1,000 records:       collector {:.0} ms, decode-only {:.0} ms: {:.1}× (goal ≤ {GOAL_CPU_TIMES:.0}×)",
        per_k(fulls.cpu, fulls_bare.count),
        per_k(fulls_bare.cpu, fulls_bare.count),
        fulls.cpu / fulls_bare.cpu.max(0.001)
    );
    println!(
        "  rows per full snapshot:      {:.1} written by the collector (goal ≤ 5; the first snapshots' phase: {:.0} per asset), \
         {:.1} inserted into ClickHouse (its views' included; server-wide), {:.1} insert statements per 1,000 records",
        fulls.rows / a.assets as f64,
        storm.rows / a.assets as f64,
        fulls.events[1] / a.assets as f64,
        fulls.events[0] / a.assets as f64 * 1000.0,
    );
    println!("  collector RSS:               {:+.0} MB over the phase", fulls.rss);
    if let Some((bare, coll)) = &steady {
        println!("steady state ({steady_total} messages: deltas, audit events, probes; the collector restarted, posture restored):");
        report(bare, coll, a.assets);
    }
    println!(
        "live: {live} ({live_secs:.0} s; it began once ClickHouse had no merge left on the database, {settled:.1} s after the backlog)"
    );
    // At this load, both consumers from the phase's start to their last record.
    let bare_rate = live_bare.count as f64 / ((live_bare.last - live_from_ms) as f64 / 1000.0).max(0.001);
    match caught_up {
        Some(secs) => {
            let rate = live_total as f64 / secs.max(0.001);
            println!(
                "  rate at this load:           bare consumer {bare_rate:.0} msg/s, collector {rate:.0} msg/s (ratio {:.2}, goal ≥ {GOAL_RATIO:.2}; \
                 each from the phase's start to its last record; the collector through {:.1} s after the producer's end)",
                rate / bare_rate,
                secs - live_secs
            );
        }
        None => println!("  rate at this load:           bare consumer {bare_rate:.0} msg/s; the collector had not caught up 60 s after the producer's end"),
    }
    println!("  consumer lag over time:      {} (librdkafka's statistics: updated every 10 s)", series(&live_series));
    let cores = cores();
    let parts = [coll_cpu - cpu_before.0, services.0 - cpu_before.1 .0, services.1 - cpu_before.1 .1, live_bare.cpu];
    println!(
        "  CPU in the phase:            collector {:.1} s, ClickHouse {:.1} s, broker {:.1} s, bare consumer {:.1} s, the rest (loadgen, \
         this bench) {:.1} s; the machine {:.0} % busy ({cores:.0} cores, {cpu_secs:.0} s)",
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        (busy - cpu_before.2 - parts.iter().sum::<f64>()).max(0.0),
        100.0 * (busy - cpu_before.2) / (cores * cpu_secs).max(0.001)
    );
    let batches = stages_after[2].0 - stages_before[2].0;
    println!("  batches stored:              {batches:.0} ({:.1}/s)", batches / live_secs.max(0.001));
    let averages: Vec<String> = STAGES
        .iter()
        .zip(stages_before.iter().zip(&stages_after))
        .map(|((_, what), (before, after))| format!("{what} {:.0} ms", (after.1 - before.1) * 1000.0 / (after.0 - before.0).max(1.0)))
        .collect();
    // A page leaves as its record is evaluated: it waits for no batch.
    println!("  stages, on average:          {} (a page's way: receipt, delivery; the rows': batch wait, store)", averages.join(", "));
    println!(
        "  violation alerts, produce → webhook: {} alerts of the live phase ({} in all), p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal p99 ≤ 250 ms)",
        lat.len(),
        arrivals.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  the broker's part:           records' age at the bare consumer's receipt p50 {:.0} ms, p99 {:.0} ms (produce → there to take)",
        live_bare.ages.0, live_bare.ages.1
    );
    println!(
        "  the collector's part:        the snapshot's receipt at the bare consumer → webhook: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
         ({} alerts of a snapshot matched)",
        percentile(&own, 0.5),
        percentile(&own, 0.99),
        own.last().copied().unwrap_or(f64::NAN),
        own.len()
    );
    if let Some(x) = live_alerts.iter().max_by_key(|x| x.arrived - x.start) {
        let at_bare = received.get(&(x.asset.clone(), x.start));
        println!(
            "  the slowest:                 asset {}, its snapshot collected {:.1} s into the phase, at the bare consumer {} ms later, \
             the alert {} ms after that",
            x.asset,
            (x.start - live_from_ms) as f64 / 1000.0,
            at_bare.map_or("?".to_string(), |r| (r - x.start).to_string()),
            at_bare.map_or("?".to_string(), |r| (x.arrived - r).to_string()),
        );
    }
    println!("  collector peak RSS:          {peak_rss:.0} MB; log: {}", work.join("collector.log").display());
    Ok(())
}

/// What the bare consumer measured.
struct Bare {
    rate: f64,
    count: i64,
    /// Its last record's arrival (unix ms).
    last: i64,
    secs: f64,
    cpu: f64,
    rss: f64,
    failed: i64,
    /// Records' age at receipt (ms), p50 and p99.
    ages: (f64, f64),
}

/// Runs the bare consumer on `prefix.*` from `from`'s offsets (partitions
/// assigned, no group join in the measured time) until it has decoded
/// `expect` records.
fn run_bare(a: &Args, prefix: &str, expect: u64, from: &str) -> Result<Bare, String> {
    finish_bare(spawn_bare(a, prefix, expect, from, None)?)
}

/// Starts the bare consumer (see [`run_bare`]); with `receipts`, it notes
/// when each snapshot arrived there.
fn spawn_bare(a: &Args, prefix: &str, expect: u64, from: &str, receipts: Option<&Path>) -> Result<Child, String> {
    let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    cmd.args(["bare", "--brokers", &a.brokers, "--prefix", prefix, "--expect", &expect.to_string(), "--from", from]);
    cmd.args(["--fetch-wait-ms", &a.fetch_wait_ms.to_string()]);
    if let Some(path) = receipts {
        cmd.arg("--receipts").arg(path);
    }
    cmd.stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())
}

/// Waits for the bare consumer to finish; what it measured.
fn finish_bare(child: Child) -> Result<Bare, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<i64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let [count, first, last, failed, age_p50, age_p99, cpu_ms, rss_kb] = f[..] else {
        return Err(format!("the bare consumer said {line:?}"));
    };
    let secs = ((last - first) as f64 / 1000.0).max(0.001);
    let (cpu, rss) = (cpu_ms as f64 / 1000.0, rss_kb as f64 / 1024.0);
    Ok(Bare { rate: count as f64 / secs, count, last, secs, cpu, rss, failed, ages: (age_p50 as f64, age_p99 as f64) })
}

/// Every partition of `prefix.*` at its start (offset 0) or where it ends
/// now (`end`), as `--from` takes them.
fn offsets(a: &Args, prefix: &str, end: bool) -> Result<String, String> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &a.brokers).create().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for stream in ["snapshots", "audit", "sla"] {
        let topic = format!("{prefix}.{stream}");
        for p in 0..a.partitions as i32 {
            let offset = if end {
                consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).map_err(|e| format!("{topic}/{p}: {e}"))?.1
            } else {
                0
            };
            out.push(format!("{topic}:{p}:{offset}"));
        }
    }
    Ok(out.join(","))
}

fn start_collector(collector: &Path, config: &Path, work: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(work.join("collector.log")).map_err(|e| e.to_string())?;
    Command::new(collector)
        .args(["run", "--config"])
        .arg(config)
        // The collector's log level: warn, unless DRIFTWATCH_BENCH_LOG says otherwise.
        .env("DRIFTWATCH_LOG", std::env::var("DRIFTWATCH_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())
}

/// Stops the collector as an operator would (SIGTERM: it finishes its
/// batch and commits), and waits for it.
fn stop(coll: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(coll.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !matches!(coll.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = coll.kill();
    let _ = coll.wait();
}

/// What the collector did with a backlog, from its metrics and /proc.
struct Measured {
    /// Seconds from the start of the process to its first decoded record
    /// (restoring posture and alerting state).
    startup: f64,
    rate: f64,
    secs: f64,
    cpu: f64,
    rss: f64,
    rows: f64,
    eval_secs: f64,
    store_secs: f64,
    /// The consumer loop waiting for a store before the next could start.
    store_wait_secs: f64,
    /// CPU seconds ClickHouse and the broker used from the collector's
    /// first record to its last.
    services_cpu: (f64, f64),
    lag_series: Vec<(f64, f64)>,
    /// Peak RSS (MB) when the first record came: the collector with its
    /// packs loaded and, after a restart, its posture restored.
    rss_before: f64,
    /// ClickHouse's `system.events` counters ([`CLICKHOUSE_EVENTS`]) over
    /// the same span.
    clickhouse_events: [f64; 4],
}

/// The `system.events` counters of the work ClickHouse does for the
/// collector's writes: insert statements, rows inserted, rows merged, and
/// parts written (each insert writes a part per table and partition).
const CLICKHOUSE_EVENTS: [&str; 4] = ["InsertQuery", "InsertedRows", "MergedRows", "MergeTreeDataWriterBlocks"];

/// The server-wide counters of [`CLICKHOUSE_EVENTS`] now (0 when unread).
fn clickhouse_events(url: &str) -> [f64; 4] {
    let names: Vec<String> = CLICKHOUSE_EVENTS.iter().map(|e| format!("'{e}'")).collect();
    let sql = format!("SELECT event, value FROM system.events WHERE event IN ({}) FORMAT TSV", names.join(","));
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let text = http(addr, "POST", "/", &sql).unwrap_or_default();
    CLICKHOUSE_EVENTS.map(|e| text.lines().find_map(|l| l.strip_prefix(e)?.strip_prefix('\t')?.trim().parse::<f64>().ok()).unwrap_or(0.0))
}

/// Waits until the collector has decoded `total` records and stored them;
/// its rate runs from its first decoded record to the last.
fn measure(coll: &mut Child, api: u16, total: u64, work: &Path, clickhouse: &str) -> Result<Measured, String> {
    let pid = coll.id();
    let counters = |text: &str| {
        [
            metric(text, "driftwatch_rows_stored_total", ""),
            metric(text, "driftwatch_evaluate_seconds_sum", ""),
            metric(text, "driftwatch_store_seconds_sum", ""),
            metric(text, "driftwatch_store_wait_seconds_sum", ""),
        ]
    };
    let mut counters_before = [0.0; 4];
    let (mut rss_before, mut events_at_first, mut events_at_done) = (0.0, [0.0; 4], [0.0; 4]);
    let started = Instant::now();
    let (mut first_at, mut lag_series) = (None::<Instant>, Vec::new());
    let (mut done_at, mut rows, mut rss) = (None::<Instant>, 0.0, 0.0);
    let (mut eval_secs, mut store_secs, mut store_wait_secs, mut cpu_at_first) = (0.0, 0.0, 0.0, 0.0);
    let mut services_at_first = (0.0, 0.0);
    while done_at.is_none() {
        if started.elapsed() > Duration::from_secs(1800) {
            let _ = coll.kill();
            return Err("the collector did not finish the backlog in 30 minutes".into());
        }
        if let Ok(Some(s)) = coll.try_wait() {
            return Err(format!("the collector exited ({s}); see {}", work.join("collector.log").display()));
        }
        std::thread::sleep(Duration::from_millis(100));
        let Some(text) = scrape(api) else { continue };
        let decoded = metric(&text, "driftwatch_records_total", "outcome=\"decoded\"");
        let stored = metric(&text, "driftwatch_batches_stored_total", "");
        if let Some((cpu, r)) = usage(pid) {
            rss = r;
            if first_at.is_none() && decoded > 0.0 {
                first_at = Some(Instant::now());
                counters_before = counters(&text);
                cpu_at_first = cpu;
                rss_before = r;
                services_at_first = services_cpu();
                events_at_first = clickhouse_events(clickhouse);
            }
        }
        if first_at.is_some() {
            lag_series.push((started.elapsed().as_secs_f64(), total as f64 - decoded));
        }
        if decoded >= total as f64 && stored > 0.0 {
            done_at = Some(Instant::now());
            let c = counters(&text);
            [rows, eval_secs, store_secs, store_wait_secs] = std::array::from_fn(|i| c[i] - counters_before[i]);
            events_at_done = clickhouse_events(clickhouse);
        }
    }
    let (first_at, done_at) = (first_at.unwrap_or(started), done_at.unwrap_or(started));
    let secs = done_at.duration_since(first_at).as_secs_f64().max(0.001);
    let cpu = usage(pid).unwrap_or_default().0 - cpu_at_first;
    let services_now = services_cpu();
    let services_cpu = (services_now.0 - services_at_first.0, services_now.1 - services_at_first.1);
    let startup = first_at.duration_since(started).as_secs_f64();
    Ok(Measured {
        startup,
        rate: total as f64 / secs,
        secs,
        cpu,
        rss,
        rows,
        eval_secs,
        store_secs,
        store_wait_secs,
        services_cpu,
        lag_series,
        rss_before,
        clickhouse_events: std::array::from_fn(|i| events_at_done[i] - events_at_first[i]),
    })
}

/// A running collector's counters: CPU and RSS from /proc, rows stored
/// from its metrics, ClickHouse's `system.events`.
struct Counters {
    cpu: f64,
    rss: f64,
    rows: f64,
    events: [f64; 4],
}

impl Counters {
    fn read(pid: u32, api: u16, clickhouse: &str) -> Counters {
        let (cpu, rss) = usage(pid).unwrap_or_default();
        let rows = scrape(api).map(|t| metric(&t, "driftwatch_rows_stored_total", "")).unwrap_or_default();
        Counters { cpu, rss, rows, events: clickhouse_events(clickhouse) }
    }

    /// Once the collector decoded `decoded` records and stored what they
    /// brought.
    fn after(pid: u32, api: u16, clickhouse: &str, decoded: u64) -> Result<Counters, String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while scrape(api).map(|t| metric(&t, "driftwatch_records_total", "outcome=\"decoded\"")).unwrap_or_default() < decoded as f64 {
            if Instant::now() > deadline {
                return Err(format!("the collector did not decode {decoded} records in 2 minutes"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Counters::settled(pid, api, clickhouse))
    }

    /// Once the rows counter holds still for 1.5 s (past `linger_ms`: the
    /// batches of what was decoded are stored).
    fn settled(pid: u32, api: u16, clickhouse: &str) -> Counters {
        let mut last = Counters::read(pid, api, clickhouse);
        loop {
            std::thread::sleep(Duration::from_millis(1500));
            let now = Counters::read(pid, api, clickhouse);
            if now.rows == last.rows {
                return now;
            }
            last = now;
        }
    }

    fn minus(self, before: &Counters) -> Counters {
        Counters {
            cpu: self.cpu - before.cpu,
            rss: self.rss - before.rss,
            rows: self.rows - before.rows,
            events: std::array::from_fn(|i| self.events[i] - before.events[i]),
        }
    }
}

/// Prints one phase: both consumers and their ratio, and the collector's
/// costs per unit: CPU per 1,000 records against decoding alone, memory
/// per asset it holds (`assets`), ClickHouse's work per 1,000 records.
fn report(bare: &Bare, c: &Measured, assets: u64) {
    println!(
        "  bare consumer (decode only): {:>9.0} msg/s  ({} in {:.1} s, CPU {:.1} s, peak RSS {:.0} MB, {} undecodable)",
        bare.rate, bare.count, bare.secs, bare.cpu, bare.rss, bare.failed
    );
    println!(
        "  collector (216 controls):    {:>9.0} msg/s  (in {:.1} s, CPU {:.1} s, peak RSS {:.0} MB; first record {:.1} s after its start, \
         through the backlog {:.1} s after it)",
        c.rate,
        c.secs,
        c.cpu,
        c.rss,
        c.startup,
        c.startup + c.secs
    );
    println!("  ratio collector / bare:      {:>9.2}  (goal ≥ {GOAL_RATIO:.2})", c.rate / bare.rate);
    println!("  ClickHouse rows:             {:>9.0} rows/s ({:.0} rows)", c.rows / c.secs, c.rows);
    println!(
        "  where the time went:         evaluating snapshots {:.1} s, storing {:.1} s (beside the loop), the loop waiting for a store {:.1} s",
        c.eval_secs, c.store_secs, c.store_wait_secs
    );
    println!(
        "  CPU of the services:         ClickHouse {:.1} s, broker {:.1} s (in the collector's {:.1} s)",
        c.services_cpu.0, c.services_cpu.1, c.secs
    );
    let cores = cores();
    let services = c.services_cpu.0 + c.services_cpu.1;
    let b = budget(bare, services, cores);
    println!(
        "  the goal's budget:           at {GOAL_RATIO:.2} × {:.0} msg/s the {} messages take {:.2} s, {:.1} s of CPU on {cores:.0} cores; the \
         services used {:.1} s and decoding alone takes {:.1} s (the bare consumer's CPU): ratio ≤ {:.2} on this machine even if \
         the collector's own work beyond decoding (evaluating, building rows, alerting) took no CPU",
        bare.rate, bare.count, b.secs, b.cpu, services, bare.cpu, b.best_ratio
    );
    println!("  backlog left over time:      {}", series(&c.lag_series));
    let per_k = |x: f64| x / (bare.count.max(1) as f64) * 1000.0;
    let (cpu, decode) = (per_k(c.cpu) * 1000.0, per_k(bare.cpu) * 1000.0);
    println!(
        "  CPU per 1,000 records:       collector {cpu:.0} ms, decode-only {decode:.0} ms: {:.1}× (goal ≤ {GOAL_CPU_TIMES:.0}×)",
        cpu / decode.max(0.001)
    );
    println!(
        "  memory per asset:            {:.0} KB ({:.0} MB peak − {:.0} MB before the first record, over {assets} assets; goal ≤ {GOAL_KB_PER_ASSET:.0} KB)",
        (c.rss - c.rss_before) * 1024.0 / assets.max(1) as f64,
        c.rss,
        c.rss_before
    );
    let [inserts, inserted, merged, parts] = c.clickhouse_events;
    println!(
        "  ClickHouse per 1,000 records: {:.0} rows inserted, {:.0} rows merged, {:.1} insert statements, {:.1} parts per insert",
        per_k(inserted),
        per_k(merged),
        per_k(inserts),
        parts / inserts.max(1.0)
    );
}

/// The goals per unit: the collector's CPU per record at most this
/// many times decoding's, and this much memory per asset held.
const GOAL_CPU_TIMES: f64 = 3.0;
const GOAL_KB_PER_ASSET: f64 = 100.0;

/// The goal: the collector at this fraction of the bare rate.
const GOAL_RATIO: f64 = 0.60;

/// The machine's cores (what the collector, ClickHouse and the broker share).
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// What the goal allows a phase, against what it cannot do without.
#[derive(Debug)]
struct Budget {
    /// Seconds the phase's messages may take at the goal's ratio.
    secs: f64,
    /// CPU seconds the machine's cores offer in that time.
    cpu: f64,
    /// The best ratio the collector could reach if its only work were
    /// the decoding the bare consumer does (its CPU) and the services'
    /// CPU stayed what it was: both share the same cores.
    best_ratio: f64,
}

fn budget(bare: &Bare, services: f64, cores: f64) -> Budget {
    let secs = bare.count as f64 / (GOAL_RATIO * bare.rate).max(f64::MIN_POSITIVE);
    let floor_secs = (services + bare.cpu) / cores.max(1.0);
    let best_rate = bare.count as f64 / floor_secs.max(f64::MIN_POSITIVE);
    Budget { secs, cpu: secs * cores, best_ratio: best_rate / bare.rate.max(f64::MIN_POSITIVE) }
}

/// About a dozen points of a (seconds, value) series: `0s:37735 6s:332 …`.
fn series(points: &[(f64, f64)]) -> String {
    let shown: Vec<String> = points.iter().step_by((points.len() / 12).max(1)).map(|(t, v)| format!("{t:.0}s:{v:.0}")).collect();
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(count: i64, secs: f64, cpu: f64) -> Bare {
        Bare { rate: count as f64 / secs, count, last: 0, secs, cpu, rss: 0.0, failed: 0, ages: (0.0, 0.0) }
    }

    #[test]
    fn the_budget_is_the_goals_time_on_every_core_and_the_best_ratio_counts_the_services_and_decoding() {
        // 42,000 messages in 0.5 s: at 0.60 of that rate they may take
        // 0.833 s, 1.667 s of CPU on two cores. The services' 2.1 s and
        // the decoding's 0.5 s need 1.3 s of both cores: 32,308 msg/s,
        // 0.385 of the bare rate.
        let b = budget(&bare(42_000, 0.5, 0.5), 2.1, 2.0);
        assert!((b.secs - 0.8333).abs() < 1e-3, "{b:?}");
        assert!((b.cpu - 1.6667).abs() < 1e-3, "{b:?}");
        assert!((b.best_ratio - 0.3846).abs() < 1e-3, "{b:?}");
        // Idle services and a cheap decoder leave room above the goal.
        assert!(budget(&bare(100_000, 0.2, 0.2), 0.1, 2.0).best_ratio > 0.60);
    }
}
