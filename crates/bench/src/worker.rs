//! A worker process: opens its share of the connections, one task each, records what
//! arrives, and talks to the parent in lines: JSON on stdout (`ready`, `progress`, `done`,
//! `churned`, `result`), commands on stdin (`go`, `stop`; end of input counts as `stop`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use pushwarden_client::{ConnectOptions, HubClient, Protocol};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::{share, ChurnArgs, Cli, Mode, ProtocolArg};
use crate::stats::{self, ErrorCounts};
use crate::{ids, marker, raw};

/// Latency histograms per worker, each behind its own lock; connection `g` uses `g % SHARDS`.
const SHARDS: usize = 8;
/// Read buffer of a raw reader (the client's WebSocket read buffer is 4 KiB too).
const RAW_READ_BUFFER: usize = 4096;

/// Lines to the parent, written by one thread so connection tasks never block on stdout.
#[derive(Clone)]
pub struct Output(std::sync::mpsc::Sender<Line>);

enum Line {
    Text(String),
    /// Answered once everything before it is written and flushed.
    Flush(std::sync::mpsc::Sender<()>),
}

impl Output {
    fn start() -> Output {
        let (tx, rx) = std::sync::mpsc::channel::<Line>();
        std::thread::spawn(move || {
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut next = rx.recv();
            while let Ok(line) = next {
                let mut out = stdout.lock();
                let mut line = Ok(line);
                // Write whatever is queued before flushing once.
                while let Ok(item) = line {
                    match item {
                        Line::Text(text) => {
                            let _ = writeln!(out, "{text}");
                        }
                        Line::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                        }
                    }
                    line = rx.try_recv();
                }
                let _ = out.flush();
                drop(out);
                next = rx.recv();
            }
        });
        Output(tx)
    }

    fn send(&self, value: Value) {
        let _ = self.0.send(Line::Text(value.to_string()));
    }

    /// Waits until every line sent so far is out (at most a few seconds).
    fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.0.send(Line::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}

enum Command {
    Go,
    Stop,
}

fn commands() -> mpsc::UnboundedReceiver<Command> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Command::Stop);
                    return;
                }
                Ok(_) => match line.trim() {
                    "go" => {
                        let _ = tx.send(Command::Go);
                    }
                    "stop" => {
                        let _ = tx.send(Command::Stop);
                        return;
                    }
                    _ => {}
                },
            }
        }
    });
    rx
}

/// Per-notification tally: deliveries here and the slowest of them.
#[derive(Default)]
struct Slot {
    count: AtomicU32,
    max_ns: AtomicU64,
}

/// What every connection task of the worker updates.
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    settled: AtomicU64,
    lost: AtomicU64,
    received: AtomicU64,
    unmatched: AtomicU64,
    /// WebSocket data frames received (a frame may carry several hub messages).
    frames: AtomicU64,
    /// Connection tasks that have ended (after `stop`, or lost).
    ended: AtomicU64,
    first_rx: AtomicU64,
    last_rx: AtomicU64,
    /// Live connections in the fan-out's organization.
    members: AtomicU64,
    hists: Vec<Mutex<Histogram<u64>>>,
    slots: Vec<Slot>,
    /// Report `done` when a notification reached every live member (fan-out with a window).
    report_done: bool,
    out: Output,
    errors: Mutex<ErrorCounts>,
}

impl Shared {
    fn error(&self, message: String) {
        self.errors.lock().add(&message);
    }

    /// A connection attempt failed; it still counts as settled.
    fn open_failed(&self, message: String) {
        self.failed.fetch_add(1, Relaxed);
        self.settled.fetch_add(1, Relaxed);
        self.error(message);
    }

    /// A connection is up (and, for `member`, one of the fan-out audience).
    fn opened(&self, member: bool) {
        self.connected.fetch_add(1, Relaxed);
        if member {
            self.members.fetch_add(1, Relaxed);
        }
        self.settled.fetch_add(1, Relaxed);
    }

    /// A notification sent at `sent` (unix ns) arrived.
    fn record(&self, shard: usize, seq: u64, sent: u64) {
        let now = marker::unix_nanos();
        let latency = now.saturating_sub(sent);
        self.received.fetch_add(1, Relaxed);
        self.first_rx.fetch_min(now, Relaxed);
        self.last_rx.fetch_max(now, Relaxed);
        self.hists[shard % SHARDS]
            .lock()
            .saturating_record((latency / 1000).max(1));
        if let Some(slot) = usize::try_from(seq).ok().and_then(|s| self.slots.get(s)) {
            slot.max_ns.fetch_max(latency, Relaxed);
            let count = u64::from(slot.count.fetch_add(1, Relaxed)) + 1;
            if self.report_done && count == self.members.load(Relaxed) {
                self.out.send(json!({"t": "done", "seq": seq}));
            }
        }
    }

    /// Records every bench notification in a frame; other messages (pings, heartbeats)
    /// carry no marker and are skipped.
    fn on_frame(&self, shard: usize, frame: &[u8]) {
        marker::find_all(frame, |found| match found {
            Some((seq, sent)) => self.record(shard, seq, sent),
            None => {
                self.unmatched.fetch_add(1, Relaxed);
            }
        });
    }

    fn histogram(&self) -> Histogram<u64> {
        let mut all = stats::histogram();
        for h in &self.hists {
            let _ = all.add(&*h.lock());
        }
        all
    }
}

struct Connect {
    url: Arc<str>,
    protocol: Protocol,
    negotiate: bool,
    timeout: Duration,
    ping: Duration,
    permits: Arc<Semaphore>,
}

impl Connect {
    fn options(&self, token: Option<String>, local: Option<IpAddr>) -> ConnectOptions {
        ConnectOptions {
            protocol: self.protocol,
            access_token: token,
            skip_negotiation: !self.negotiate,
            local_addr: local,
            ..ConnectOptions::default()
        }
    }

    async fn open(&self, options: ConnectOptions) -> Result<HubClient, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.timeout, HubClient::connect(&self.url, options)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".into()),
        }
    }
}

/// One held hub connection: connect, then read until stopped, with a Ping every interval.
async fn hub_connection(
    shared: Arc<Shared>,
    connect: Arc<Connect>,
    options: ConnectOptions,
    shard: usize,
    member: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = match connect.open(options).await {
        Ok(client) => client,
        Err(e) => return shared.open_failed(e),
    };
    shared.opened(member);
    // Spread the Pings so they do not all arrive in the same instant.
    let phase = connect.ping.mul_f64(rand::random::<f64>());
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + phase, connect.ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = loop {
        tokio::select! {
            _ = stop.changed() => break true,
            // Raw frames, not decoded events: the readers should cost what the raw
            // ceiling's readers cost, so that the two runs measure the server and the writer.
            frame = client.next_frame() => match frame {
                Ok(Some(frame)) => shared.on_frame(shard, &frame),
                Ok(None) => {
                    let reason = match client.close_frame() {
                        Some((code, reason)) => format!("closed by the server: {code} {reason}"),
                        None => "closed by the server".into(),
                    };
                    shared.error(reason);
                    break false;
                }
                Err(e) => {
                    shared.error(e.to_string());
                    break false;
                }
            },
            _ = ping.tick() => {
                if let Err(e) = client.send_ping().await {
                    shared.error(format!("ping: {e}"));
                    break false;
                }
            }
        }
    };
    let frames = client.frame_counts();
    shared
        .frames
        .fetch_add(frames.binary + frames.text, Relaxed);
    if !stopped {
        shared.lost.fetch_add(1, Relaxed);
        if member {
            shared.members.fetch_sub(1, Relaxed);
        }
    }
    shared.ended.fetch_add(1, Relaxed);
}

/// One raw reader: a plain TCP connection to the raw writer, counting frames.
async fn raw_connection(
    shared: Arc<Shared>,
    addr: SocketAddr,
    local: Option<IpAddr>,
    connect: Arc<Connect>,
    shard: usize,
    mut stop: watch::Receiver<bool>,
) {
    let opened = async {
        let _permit = connect.permits.acquire().await.map_err(|e| e.to_string())?;
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(ip) = local {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("bind {ip}: {e}"))?;
        }
        let stream = tokio::time::timeout(connect.timeout, socket.connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok::<_, String>(stream)
    };
    let mut stream = match opened.await {
        Ok(stream) => stream,
        Err(e) => return shared.open_failed(e),
    };
    shared.opened(true);
    let mut buf = vec![0u8; RAW_READ_BUFFER];
    let mut filled = 0;
    let mut frames = 0u64;
    let stopped = loop {
        tokio::select! {
            _ = stop.changed() => break true,
            read = stream.read(&mut buf[filled..]) => match read {
                Ok(0) => break false,
                Ok(n) => {
                    filled += n;
                    let used = raw::scan_frames(&buf[..filled], |payload| {
                        frames += 1;
                        marker::find_all(payload, |found| match found {
                            Some((seq, sent)) => shared.record(shard, seq, sent),
                            None => {
                                shared.unmatched.fetch_add(1, Relaxed);
                            }
                        });
                    });
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                    if let Some(need) = raw::frame_len(&buf[..filled]) {
                        if need > buf.len() {
                            buf.resize(need, 0);
                        }
                    }
                }
                Err(e) => {
                    shared.error(e.to_string());
                    break false;
                }
            }
        }
    };
    shared.frames.fetch_add(frames, Relaxed);
    if !stopped {
        shared.lost.fetch_add(1, Relaxed);
        shared.members.fetch_sub(1, Relaxed);
    }
    shared.ended.fetch_add(1, Relaxed);
}

/// Connect/disconnect cycles; returns the tallies of this worker.
async fn churn(
    args: ChurnArgs,
    index: usize,
    workers: usize,
    tokens: Arc<Vec<Option<String>>>,
    connect: Arc<Connect>,
    sources: Arc<Vec<Option<IpAddr>>>,
) -> Value {
    let (a, b) = share(args.concurrency, index, workers);
    let slots = b - a;
    let rate = if args.concurrency > 0 {
        args.rate * slots as f64 / args.concurrency as f64
    } else {
        0.0
    };
    let start = tokio::time::Instant::now();
    let end = start + args.duration;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(ErrorCounts::default()));
    let mut tasks = Vec::with_capacity(slots);
    for _ in 0..slots {
        let (tokens, connect, sources, next, errors) = (
            tokens.clone(),
            connect.clone(),
            sources.clone(),
            next.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut hist = stats::histogram();
            let (mut ok, mut failed, mut closed, mut close_failed) = (0u64, 0u64, 0u64, 0u64);
            loop {
                let k = next.fetch_add(1, Relaxed);
                if rate > 0.0 {
                    let at = start + Duration::from_secs_f64(k as f64 / rate);
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                } else if tokio::time::Instant::now() >= end {
                    break;
                }
                let token = tokens[k as usize % tokens.len().max(1)].clone();
                let local = sources[k as usize % sources.len().max(1)];
                let began = Instant::now();
                match connect.open(connect.options(token, local)).await {
                    Ok(client) => {
                        ok += 1;
                        hist.saturating_record(began.elapsed().as_micros().max(1) as u64);
                        match client.close().await {
                            Ok(()) => closed += 1,
                            Err(e) => {
                                close_failed += 1;
                                errors.lock().add(&format!("close: {e}"));
                            }
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        errors.lock().add(&e);
                    }
                }
            }
            (hist, ok, failed, closed, close_failed)
        }));
    }
    let mut hist = stats::histogram();
    let (mut ok, mut failed, mut closed, mut close_failed) = (0u64, 0u64, 0u64, 0u64);
    for task in tasks {
        if let Ok((h, a, b, c, d)) = task.await {
            let _ = hist.add(&h);
            ok += a;
            failed += b;
            closed += c;
            close_failed += d;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let errors = errors.lock().to_json();
    json!({
        "slots": slots,
        "connects": ok,
        "connect_failures": failed,
        "disconnects": closed,
        "disconnect_failures": close_failed,
        "elapsed_seconds": elapsed,
        "connect_latency": stats::to_json(&hist),
        "errors": errors,
    })
}

pub async fn run(cli: Cli) -> Result<()> {
    let rss_base = stats::rss_kib(std::process::id());
    let out = Output::start();
    let mut commands = commands();
    let deadline = tokio::time::sleep(cli.deadline());
    tokio::pin!(deadline);
    let index = cli.worker_index.unwrap_or(0);
    let workers = cli.worker_count.max(1);
    let (start, end) = cli.share();
    let common = &cli.common;
    let fan = cli.fan();
    let slots = match fan {
        Some(f) => usize::try_from(f.max_notifications).unwrap_or(usize::MAX),
        None => 0,
    };
    let shared = Arc::new(Shared {
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        received: AtomicU64::new(0),
        unmatched: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        ended: AtomicU64::new(0),
        first_rx: AtomicU64::new(u64::MAX),
        last_rx: AtomicU64::new(0),
        members: AtomicU64::new(0),
        hists: (0..SHARDS)
            .map(|_| Mutex::new(stats::histogram()))
            .collect(),
        slots: (0..slots).map(|_| Slot::default()).collect(),
        report_done: fan.is_some_and(|f| f.in_flight.is_some()),
        out: out.clone(),
        errors: Mutex::new(ErrorCounts::default()),
    });
    let connect = Arc::new(Connect {
        url: common.url.as_str().into(),
        protocol: match common.protocol {
            ProtocolArg::Messagepack => Protocol::MessagePack,
            ProtocolArg::Json => Protocol::Json,
        },
        negotiate: common.negotiate,
        timeout: common.connect_timeout,
        ping: common.ping_interval,
        permits: Arc::new(Semaphore::new(common.connect_concurrency.max(1))),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let users = cli.users();
    let orgs = common.orgs.max(1);
    let minter = ids::minter(common)?;
    let mut mint_seconds = 0.0;
    let mut churn_input = None;

    if let Mode::Raw(_) = cli.mode {
        let addr = cli
            .raw_addr
            .context("raw mode: the writer's address is missing")?;
        for g in start..end {
            tokio::spawn(raw_connection(
                shared.clone(),
                addr,
                ids::source_ip(common, g),
                connect.clone(),
                g,
                stop_rx.clone(),
            ));
        }
    } else {
        let pairs: Vec<(usize, usize)> = (start..end).map(|g| (g % users, g % orgs)).collect();
        let (tokens, took) = ids::mint_all(minter.as_ref(), &pairs, common.threads)?;
        mint_seconds += took.as_secs_f64();
        if let Mode::Churn(args) = &cli.mode {
            // Churn identities: users after the held connections' ones, one per token
            // (or cycling over --users when given).
            let count = args.tokens.max(1);
            let pairs: Vec<(usize, usize)> = (0..count)
                .map(|k| {
                    let mut u = common.connections + index * count + k;
                    if let Some(users) = common.users {
                        u %= users.max(1);
                    }
                    (u, u % orgs)
                })
                .collect();
            let (tokens, took) = ids::mint_all(minter.as_ref(), &pairs, common.threads)?;
            mint_seconds += took.as_secs_f64();
            let sources: Vec<Option<IpAddr>> = (0..common.source_ips.max(1) as usize)
                .map(|k| ids::source_ip(common, k))
                .collect();
            churn_input = Some((args.clone(), Arc::new(tokens), Arc::new(sources)));
        }
        for (g, token) in (start..end).zip(tokens) {
            let options = connect.options(token, ids::source_ip(common, g));
            tokio::spawn(hub_connection(
                shared.clone(),
                connect.clone(),
                options,
                g,
                g % orgs == 0,
                stop_rx.clone(),
            ));
        }
    }

    // Wait until every connection is up or has failed.
    let share_len = (end - start) as u64;
    loop {
        if shared.settled.load(Relaxed) >= share_len {
            break;
        }
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let own_pid = std::process::id();
    out.send(json!({
        "t": "ready",
        "worker": index,
        "connected": shared.connected.load(Relaxed),
        "failed": shared.failed.load(Relaxed),
        "members": shared.members.load(Relaxed),
        "rss_kib": stats::rss_kib(own_pid),
        "rss_base_kib": rss_base,
        "mint_seconds": mint_seconds,
    }));

    let mut progress = tokio::time::interval(Duration::from_millis(250));
    let mut cpu_at_go = stats::own_cpu_seconds();
    let mut churn_task: Option<tokio::task::JoinHandle<Value>> = None;
    let mut churn_result = Value::Null;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            command = commands.recv() => match command {
                Some(Command::Go) => {
                    cpu_at_go = stats::own_cpu_seconds();
                    if let Some((args, tokens, sources)) = churn_input.take() {
                        churn_task = Some(tokio::spawn(churn(
                            args, index, workers, tokens, connect.clone(), sources,
                        )));
                    }
                }
                Some(Command::Stop) | None => break,
            },
            result = async { churn_task.as_mut().expect("guarded").await }, if churn_task.is_some() => {
                churn_task = None;
                churn_result = result.unwrap_or(Value::Null);
                out.send(json!({"t": "churned", "worker": index}));
            }
            _ = progress.tick() => out.send(json!({
                "t": "progress",
                "worker": index,
                "received": shared.received.load(Relaxed),
                "lost": shared.lost.load(Relaxed),
                "members": shared.members.load(Relaxed),
            })),
        }
    }
    let cpu = stats::own_cpu_seconds() - cpu_at_go;
    let _ = stop_tx.send(true);
    // Let the connection tasks add their frame counts (briefly: they only need a wake-up).
    let connected = shared.connected.load(Relaxed);
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while shared.ended.load(Relaxed) < connected && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let seqs: Vec<Value> = {
        let last = shared
            .slots
            .iter()
            .rposition(|s| s.count.load(Relaxed) > 0)
            .map_or(0, |i| i + 1);
        shared.slots[..last]
            .iter()
            .map(|s| json!([s.count.load(Relaxed), s.max_ns.load(Relaxed) / 1000]))
            .collect()
    };
    let errors = shared.errors.lock().to_json();
    out.send(json!({
        "t": "result",
        "worker": index,
        "connected": shared.connected.load(Relaxed),
        "failed": shared.failed.load(Relaxed),
        "lost": shared.lost.load(Relaxed),
        "members": shared.members.load(Relaxed),
        "received": shared.received.load(Relaxed),
        "unmatched": shared.unmatched.load(Relaxed),
        "frames": shared.frames.load(Relaxed),
        "first_rx": shared.first_rx.load(Relaxed),
        "last_rx": shared.last_rx.load(Relaxed),
        "cpu_seconds": cpu,
        "rss_kib": stats::rss_kib(own_pid),
        "latency": stats::to_json(&shared.histogram()),
        "seqs": seqs,
        "churn": churn_result,
        "errors": errors,
    }));
    tokio::task::block_in_place(|| out.flush());
    Ok(())
}
