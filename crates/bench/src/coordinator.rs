//! The parent process: starts the workers (copies of this program), waits for their
//! connections, drives the measurement (sends notifications, or writes raw frames), stops
//! the workers and turns their reports into one JSON result.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::cli::{Cli, FanArgs, Mode, ProtocolArg};
use crate::stats::{self, ErrorCounts};
use crate::{ids, marker, raw};

/// What the workers have said so far.
#[derive(Default)]
struct State {
    ready: Vec<Option<Value>>,
    results: Vec<Option<Value>>,
    churned: usize,
    received: Vec<u64>,
    exited: usize,
}

struct Board {
    state: Mutex<State>,
    changed: Notify,
    /// `done` reports per notification, until every worker with members has reported.
    done: Mutex<HashMap<u64, usize>>,
    need_done: AtomicU64,
    complete_tx: mpsc::UnboundedSender<u64>,
}

impl Board {
    /// Waits until `ready` holds for the state, or `limit` passes; returns whether it held.
    async fn wait(&self, limit: Duration, ready: impl Fn(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state.lock();
                if ready(&state) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return ready(&self.state.lock());
            }
        }
    }

    fn on_line(&self, worker: usize, line: &str) {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            eprintln!("worker {worker}: {line}");
            return;
        };
        match value.get("t").and_then(Value::as_str) {
            Some("done") => {
                let Some(seq) = value.get("seq").and_then(Value::as_u64) else {
                    return;
                };
                let mut done = self.done.lock();
                let count = done.entry(seq).or_default();
                *count += 1;
                if *count as u64 >= self.need_done.load(Relaxed) {
                    done.remove(&seq);
                    let _ = self.complete_tx.send(seq);
                }
                return;
            }
            Some("progress") => {
                let received = value.get("received").and_then(Value::as_u64).unwrap_or(0);
                self.state.lock().received[worker] = received;
            }
            Some("ready") => self.state.lock().ready[worker] = Some(value),
            Some("result") => {
                let received = value.get("received").and_then(Value::as_u64).unwrap_or(0);
                let mut state = self.state.lock();
                state.received[worker] = received;
                state.results[worker] = Some(value);
            }
            Some("churned") => self.state.lock().churned += 1,
            _ => return,
        }
        self.changed.notify_waiters();
    }
}

struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
}

impl Workers {
    fn spawn(cli: &Cli, raw_addr: Option<SocketAddr>, board: &Arc<Board>) -> Result<Workers> {
        let exe = std::env::current_exe().context("locating this program")?;
        let count = cli.common.processes.max(1);
        let mut children = Vec::with_capacity(count);
        let mut stdins = Vec::with_capacity(count);
        for index in 0..count {
            let mut command = Command::new(&exe);
            command
                .args(std::env::args_os().skip(1))
                .arg("--worker-index")
                .arg(index.to_string())
                .arg("--worker-count")
                .arg(count.to_string());
            if let Some(addr) = raw_addr {
                command.arg("--raw-addr").arg(addr.to_string());
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker")?;
            stdins.push(child.stdin.take().context("worker stdin")?);
            let stdout = child.stdout.take().context("worker stdout")?;
            let board = board.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    board.on_line(index, &line);
                }
                board.state.lock().exited += 1;
                board.changed.notify_waiters();
            });
            children.push(child);
        }
        Ok(Workers { children, stdins })
    }

    async fn tell(&mut self, command: &str) {
        for stdin in &mut self.stdins {
            let _ = stdin.write_all(format!("{command}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }

    /// Waits for the workers to exit, ending those still running after a few seconds.
    async fn finish(mut self) {
        self.stdins.clear();
        for child in &mut self.children {
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

type Sent = Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>;
/// Sends notification `seq` (stamping it with the time of sending); yields the number of
/// deliveries it was queued for.
type SendFn = Arc<dyn Fn(u64) -> Sent + Send + Sync>;

/// What the sending side did.
struct Driven {
    sent: u64,
    ok: u64,
    delivered: u64,
    started_nanos: u64,
    send_seconds: f64,
    timed_out: u64,
    per_seq: Arc<Vec<AtomicU32>>,
    errors: ErrorCounts,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    delivered: u64,
    errors: ErrorCounts,
}

struct DrivePlan {
    rate: f64,
    in_flight: Option<usize>,
    duration: Duration,
    concurrency: usize,
    max: u64,
    timeout: Duration,
}

/// Sends at `plan.rate` per second, or keeping `plan.in_flight` notifications undelivered,
/// for `plan.duration`.
async fn drive(
    plan: DrivePlan,
    send: SendFn,
    track: usize,
    complete: &mut mpsc::UnboundedReceiver<u64>,
) -> Driven {
    let per_seq: Arc<Vec<AtomicU32>> = Arc::new((0..track).map(|_| AtomicU32::new(0)).collect());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started_nanos = marker::unix_nanos();
    let start = tokio::time::Instant::now();
    let end = start + plan.duration;
    let concurrency = plan.concurrency.clamp(1, 100_000);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut seq = 0u64;
    let mut timed_out = 0;
    let launch = |seq: u64, permit: Option<tokio::sync::OwnedSemaphorePermit>| {
        let sent = send(seq);
        let tally = tally.clone();
        let per_seq = per_seq.clone();
        tokio::spawn(async move {
            let result = sent.await;
            let mut tally = tally.lock();
            match result {
                Ok(delivered) => {
                    tally.ok += 1;
                    tally.delivered += delivered;
                    if let Some(slot) = usize::try_from(seq).ok().and_then(|s| per_seq.get(s)) {
                        slot.store(u32::try_from(delivered).unwrap_or(u32::MAX), Relaxed);
                    }
                }
                Err(e) => tally.errors.add(&e),
            }
            drop(permit);
        });
    };
    match plan.in_flight {
        None => {
            let rate = plan.rate.max(0.001);
            while seq < plan.max {
                let at = start + Duration::from_secs_f64(seq as f64 / rate);
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at).await;
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                launch(seq, Some(permit));
                seq += 1;
            }
        }
        Some(window) => {
            let window = window.max(1);
            let mut open: HashMap<u64, tokio::time::Instant> = HashMap::new();
            loop {
                let now = tokio::time::Instant::now();
                while open.len() < window && now < end && seq < plan.max {
                    launch(seq, None);
                    open.insert(seq, now);
                    seq += 1;
                }
                let sending = now < end && seq < plan.max;
                if open.is_empty() && !sending {
                    break;
                }
                let oldest = open.values().min().map(|t| *t + plan.timeout);
                let wake = match (oldest, sending) {
                    (Some(t), true) => t.min(end),
                    (Some(t), false) => t,
                    (None, _) => end,
                };
                tokio::select! {
                    done = complete.recv() => match done {
                        Some(s) => { open.remove(&s); }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(wake) => {
                        let now = tokio::time::Instant::now();
                        let before = open.len();
                        open.retain(|_, sent| *sent + plan.timeout > now);
                        timed_out += (before - open.len()) as u64;
                    }
                }
            }
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    // Wait for the requests still under way.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        permits.acquire_many(concurrency as u32),
    )
    .await;
    if plan.in_flight.is_some() {
        // Window mode spawns without permits: give the last requests a moment.
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < until {
            let finished = {
                let tally = tally.lock();
                tally.ok + tally.errors.total()
            };
            if finished >= seq {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let tally = std::mem::take(&mut *tally.lock());
    Driven {
        sent: seq,
        ok: tally.ok,
        delivered: tally.delivered,
        started_nanos,
        send_seconds,
        timed_out,
        per_seq,
        errors: tally.errors,
    }
}

/// Posts envelopes to `/send`. `body(seq, nanos)` gives the envelope and how many
/// deliveries to expect when the server does not say (pushwarden answers `{"delivered": n}`;
/// Bitwarden's own service answers an empty 200).
fn http_sender(
    cli: &Cli,
    body: impl Fn(u64, u64) -> (String, u64) + Send + Sync + 'static,
) -> SendFn {
    let url = match &cli.common.send_url {
        Some(url) => url.clone(),
        None => match url::Url::parse(&cli.common.url) {
            Ok(hub) => {
                let scheme = match hub.scheme() {
                    "ws" => "http",
                    "wss" => "https",
                    other => other,
                };
                format!(
                    "{scheme}://{}/send",
                    hub.host_str().unwrap_or("127.0.0.1").to_owned()
                        + &hub.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            }
            Err(_) => cli.common.url.clone(),
        },
    };
    let key = cli.common.send_key.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build()
        .expect("HTTP client");
    let url: Arc<str> = url.into();
    let body = Arc::new(body);
    Arc::new(move |seq| {
        let (client, url, key, body) = (client.clone(), url.clone(), key.clone(), body.clone());
        Box::pin(async move {
            let (envelope, expected) = body(seq, marker::unix_nanos());
            let mut request = client
                .post(&*url)
                .header("content-type", "application/json")
                .body(envelope);
            if let Some(key) = &key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.map_err(|e| format!("/send: {e}"))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| format!("/send: {e}"))?;
            if !status.is_success() {
                return Err(format!("/send: HTTP {status}: {text}"));
            }
            Ok(serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("delivered").and_then(Value::as_u64))
                .unwrap_or(expected))
        })
    })
}

/// The raw writer: sockets split over a few tasks, each writing every notification to its
/// sockets. Like the server (which coalesces what is queued for a connection into one
/// WebSocket message), notifications that queued up while a task was writing go out together
/// in one frame and one write per socket.
fn raw_sender(streams: Vec<TcpStream>, shards: usize, write_errors: Arc<AtomicU64>) -> SendFn {
    let sockets = streams.len() as u64;
    let shards = shards.clamp(1, 64).min(streams.len().max(1));
    let mut groups: Vec<Vec<TcpStream>> = (0..shards).map(|_| Vec::new()).collect();
    for (i, stream) in streams.into_iter().enumerate() {
        groups[i % shards].push(stream);
    }
    let mut channels = Vec::with_capacity(shards);
    for mut group in groups {
        let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
        let write_errors = write_errors.clone();
        tokio::spawn(async move {
            let mut alive = vec![true; group.len()];
            let mut frame = Vec::with_capacity(64 * 1024);
            while let Some(first) = rx.recv().await {
                // The sender woke this task as soon as it queued one notification; let the
                // others already under way queue theirs too, then take them all.
                tokio::task::yield_now().await;
                let mut messages = vec![first];
                let mut size = messages[0].len();
                while size < 64 * 1024 {
                    match rx.try_recv() {
                        Ok(more) => {
                            size += more.len();
                            messages.push(more);
                        }
                        Err(_) => break,
                    }
                }
                frame.clear();
                raw::binary_frame_header(size, &mut frame);
                for message in &messages {
                    frame.extend_from_slice(message);
                }
                for (stream, alive) in group.iter_mut().zip(alive.iter_mut()) {
                    if !*alive {
                        continue;
                    }
                    let written = match stream.try_write(&frame) {
                        Ok(n) if n == frame.len() => Ok(()),
                        Ok(n) => stream.write_all(&frame[n..]).await,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            stream.write_all(&frame).await
                        }
                        Err(e) => Err(e),
                    };
                    if written.is_err() {
                        *alive = false;
                        write_errors.fetch_add(1, Relaxed);
                    }
                }
            }
            // Keep the sockets open until the run is over (the parent exits then).
            std::future::pending::<()>().await;
        });
        channels.push(tx);
    }
    let template = match raw::fanout_message_template() {
        Ok(t) => Arc::new(t),
        Err(e) => panic!("raw frame: {e}"),
    };
    let channels = Arc::new(channels);
    Arc::new(move |seq| {
        let (template, channels) = (template.clone(), channels.clone());
        Box::pin(async move {
            let (message, at) = &*template;
            let mut message = message.clone();
            marker::patch(&mut message, *at, seq, marker::unix_nanos());
            let message = Bytes::from(message);
            for channel in channels.iter() {
                channel
                    .send(message.clone())
                    .await
                    .map_err(|_| "raw writer stopped".to_string())?;
            }
            Ok(sockets)
        })
    })
}

fn sum(values: &[Value], field: &str) -> u64 {
    values
        .iter()
        .filter_map(|v| v.get(field).and_then(Value::as_u64))
        .sum()
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn per(numerator: f64, denominator: f64) -> Value {
    if denominator > 0.0 && numerator.is_finite() {
        json!(round(numerator / denominator, 3))
    } else {
        Value::Null
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let nofile = stats::raise_nofile_limit();
    let processes = cli.common.processes.max(1);
    let per_process = cli.common.connections.div_ceil(processes);
    if per_process as u64 + 64 > nofile {
        eprintln!(
            "warning: {per_process} connections per process but the open-file limit is {nofile}; \
             use more --processes"
        );
    }
    // The raw ceiling does not involve the server.
    let server_pid = match cli.mode {
        Mode::Raw(_) => None,
        _ => cli.common.server_pid,
    };
    let server_rss_before = server_pid.and_then(stats::rss_kib);

    // The raw writer listens before the workers start.
    let mut raw_listener = None;
    if let Mode::Raw(args) = &cli.mode {
        let socket = if args.listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(args.listen)?;
        raw_listener = Some(socket.listen(4096)?);
    }
    let raw_addr = match &raw_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let accepted: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accept_task = raw_listener.map(|listener| {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                accepted.lock().push(stream);
            }
        })
    });

    let (complete_tx, mut complete_rx) = mpsc::unbounded_channel();
    let board = Arc::new(Board {
        state: Mutex::new(State {
            ready: vec![None; processes],
            results: vec![None; processes],
            received: vec![0; processes],
            ..State::default()
        }),
        changed: Notify::new(),
        done: Mutex::new(HashMap::new()),
        need_done: AtomicU64::new(u64::MAX),
        complete_tx,
    });
    let started = Instant::now();
    let mut workers = Workers::spawn(&cli, raw_addr, &board)?;
    let all_ready = board
        .wait(cli.common.ready_timeout + Duration::from_secs(30), |s| {
            s.ready.iter().all(Option::is_some) || s.exited > 0
        })
        .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let ready: Vec<Value> = board.state.lock().ready.iter().flatten().cloned().collect();
    if !all_ready || ready.len() < processes {
        workers.finish().await;
        bail!(
            "only {} of {processes} workers got ready (see their errors above)",
            ready.len()
        );
    }
    let connected = sum(&ready, "connected");
    let members = sum(&ready, "members");
    let with_members = ready
        .iter()
        .filter(|r| r.get("members").and_then(Value::as_u64).unwrap_or(0) > 0)
        .count() as u64;
    board.need_done.store(with_members, Relaxed);
    let mint_seconds = ready
        .iter()
        .filter_map(|r| r.get("mint_seconds").and_then(Value::as_f64))
        .fold(0.0, f64::max);
    eprintln!(
        "{} connections up ({} failed) in {connect_seconds:.1} s",
        connected,
        sum(&ready, "failed")
    );

    let mut out = Map::new();
    out.insert("mode".into(), json!(cli.mode_name()));
    out.insert("url".into(), json!(cli.common.url));
    out.insert(
        "protocol".into(),
        json!(match cli.common.protocol {
            ProtocolArg::Messagepack => "messagepack",
            ProtocolArg::Json => "json",
        }),
    );
    out.insert("processes".into(), json!(processes));
    out.insert(
        "jwt".into(),
        json!(if cli.common.rsa_private_key.is_some() {
            "RS256"
        } else if cli.common.secret.is_some() {
            "HS256"
        } else {
            "none"
        }),
    );
    out.insert(
        "connections_requested".into(),
        json!(cli.common.connections),
    );
    out.insert("connections".into(), json!(connected));
    out.insert("connect_failures".into(), json!(sum(&ready, "failed")));
    out.insert("connect_seconds".into(), json!(round(connect_seconds, 3)));
    out.insert("mint_seconds".into(), json!(round(mint_seconds, 3)));
    let client_rss_ready = sum(&ready, "rss_kib");
    out.insert("client_rss_kib".into(), json!(client_rss_ready));
    // Growth from each worker's start (tokens, connections, buffers) per connection.
    let client_rss_growth = client_rss_ready.saturating_sub(sum(&ready, "rss_base_kib"));
    out.insert(
        "client_rss_per_connection_bytes".into(),
        per(client_rss_growth as f64 * 1024.0, connected as f64),
    );

    let mut errors = ErrorCounts::default();
    let mut human = Vec::new();
    let server_cpu_before = server_pid.and_then(stats::cpu_seconds);
    let own_cpu_before = stats::own_cpu_seconds();
    let mut window_started = Instant::now();
    let mut driven: Option<Driven> = None;
    let mut raw_write_errors = None;

    match &cli.mode {
        Mode::Idle(args) => {
            tokio::time::sleep(args.settle).await;
            let after = server_pid.and_then(stats::rss_kib);
            out.insert("settle_seconds".into(), json!(args.settle.as_secs_f64()));
            out.insert("server_rss_before_kib".into(), json!(server_rss_before));
            out.insert("server_rss_after_kib".into(), json!(after));
            let per_connection = match (server_rss_before, after) {
                (Some(b), Some(a)) => per((a as f64 - b as f64) * 1024.0, connected as f64),
                _ => Value::Null,
            };
            out.insert(
                "server_rss_per_connection_bytes".into(),
                per_connection.clone(),
            );
            human.push(format!(
                "server RSS {} -> {} KiB: {} bytes per connection",
                server_rss_before.map_or("?".into(), |v| v.to_string()),
                after.map_or("?".into(), |v| v.to_string()),
                per_connection
            ));
            if !args.hold.is_zero() {
                tokio::time::sleep(args.hold).await;
                out.insert("hold_seconds".into(), json!(args.hold.as_secs_f64()));
                out.insert(
                    "server_rss_after_hold_kib".into(),
                    json!(server_pid.and_then(stats::rss_kib)),
                );
            }
        }
        Mode::Unicast(args) => {
            let (n, users) = (cli.common.connections, cli.users());
            let targets = users.min(n).max(1);
            let send = http_sender(&cli, move |seq, nanos| {
                let user = rand::random_range(0..targets);
                // Connections g with g % users == user.
                let expected = n / users + usize::from(user < n % users);
                let envelope = raw::unicast_envelope(&ids::user_id(user), seq, nanos);
                (envelope, expected as u64)
            });
            workers.tell("go").await;
            window_started = Instant::now();
            let plan = DrivePlan {
                rate: args.rate,
                in_flight: None,
                duration: args.duration,
                concurrency: args.send_concurrency,
                max: u64::MAX,
                timeout: Duration::from_secs(30),
            };
            let d = drive(plan, send, 0, &mut complete_rx).await;
            let expected = d.delivered;
            board
                .wait(args.drain, |s| s.received.iter().sum::<u64>() >= expected)
                .await;
            out.insert("target_rate".into(), json!(args.rate));
            driven = Some(d);
        }
        Mode::Fanout(args) => {
            let org = ids::org_id(0);
            let send = http_sender(&cli, move |seq, nanos| {
                (raw::fanout_envelope(&org, seq, nanos), members)
            });
            window_started = Instant::now();
            driven = Some(
                fan_run(
                    args,
                    send,
                    members,
                    &mut workers,
                    &board,
                    &mut complete_rx,
                    &mut out,
                )
                .await?,
            );
        }
        Mode::Raw(args) => {
            let ok = {
                let accepted = accepted.clone();
                let limit = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    if accepted.lock().len() as u64 >= connected {
                        break true;
                    }
                    if tokio::time::Instant::now() > limit {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            if let Some(task) = accept_task {
                task.abort();
            }
            let streams = std::mem::take(&mut *accepted.lock());
            if !ok {
                errors.add(&format!(
                    "raw writer accepted {} of {connected} connections",
                    streams.len()
                ));
            }
            let (message, _) = raw::fanout_message_template()?;
            let mut frame = Vec::new();
            raw::binary_frame_header(message.len(), &mut frame);
            out.insert("message_bytes".into(), json!(message.len()));
            out.insert("frame_bytes".into(), json!(frame.len() + message.len()));
            let write_errors = Arc::new(AtomicU64::new(0));
            raw_write_errors = Some(write_errors.clone());
            let send = raw_sender(streams, cli.common.threads.max(1), write_errors);
            window_started = Instant::now();
            driven = Some(
                fan_run(
                    &args.fan,
                    send,
                    members,
                    &mut workers,
                    &board,
                    &mut complete_rx,
                    &mut out,
                )
                .await?,
            );
        }
        Mode::Push(_) | Mode::PushOrg(_) => {
            bail!("the push modes run on their own (push::run, push_org::run)")
        }
        Mode::Churn(args) => {
            workers.tell("go").await;
            window_started = Instant::now();
            board
                .wait(args.duration + Duration::from_secs(30), |s| {
                    s.churned + s.exited >= processes
                })
                .await;
            out.insert("target_rate".into(), json!(args.rate));
            out.insert("concurrency".into(), json!(args.concurrency));
            out.insert("tokens_per_process".into(), json!(args.tokens));
        }
    }
    let window_seconds = window_started.elapsed().as_secs_f64();
    let own_cpu = stats::own_cpu_seconds() - own_cpu_before;
    let server_cpu = match (server_cpu_before, server_pid.and_then(stats::cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    workers.tell("stop").await;
    board
        .wait(Duration::from_secs(30), |s| {
            s.results.iter().all(Option::is_some) || s.exited >= processes
        })
        .await;
    let results: Vec<Value> = board
        .state
        .lock()
        .results
        .iter()
        .flatten()
        .cloned()
        .collect();
    workers.finish().await;
    if results.len() < processes {
        errors.add_n(
            "worker exited without a result",
            (processes - results.len()) as u64,
        );
    }

    for r in &results {
        if let Some(e) = r.get("errors") {
            errors.merge_json(e);
        }
        if let Some(e) = r.get("churn").and_then(|c| c.get("errors")) {
            errors.merge_json(e);
        }
    }
    let lost = sum(&results, "lost");
    let received = sum(&results, "received");
    let client_cpu: f64 = results
        .iter()
        .filter_map(|r| r.get("cpu_seconds").and_then(Value::as_f64))
        .sum();
    let mut latency = stats::histogram();
    for r in &results {
        if let Some(h) = r.get("latency") {
            stats::add_json(&mut latency, h);
        }
    }
    let last_rx = results
        .iter()
        .filter_map(|r| r.get("last_rx").and_then(Value::as_u64))
        .max()
        .unwrap_or(0);
    out.insert("lost_connections".into(), json!(lost));
    out.insert(
        "connections_at_end".into(),
        json!(connected.saturating_sub(lost)),
    );
    out.insert(
        "unmatched_messages".into(),
        json!(sum(&results, "unmatched")),
    );
    out.insert("frames_received".into(), json!(sum(&results, "frames")));
    if let Some(cpu) = server_cpu {
        out.insert("server_cpu_seconds".into(), json!(round(cpu, 3)));
    }
    out.insert("client_cpu_seconds".into(), json!(round(client_cpu, 3)));
    // The parent's own CPU: the raw writer, or the /send sender.
    out.insert("parent_cpu_seconds".into(), json!(round(own_cpu, 3)));

    if let Some(d) = &driven {
        errors.merge_json(&d.errors.to_json());
        if let Some(write_errors) = &raw_write_errors {
            let n = write_errors.load(Relaxed);
            if n > 0 {
                errors.add_n("raw writer: socket write failed", n);
            }
        }
        let window = if last_rx > d.started_nanos {
            (last_rx - d.started_nanos) as f64 / 1e9
        } else {
            d.send_seconds
        };
        out.insert("sent".into(), json!(d.sent));
        out.insert("send_ok".into(), json!(d.ok));
        out.insert("send_failures".into(), json!(d.sent - d.ok));
        out.insert("send_seconds".into(), json!(round(d.send_seconds, 3)));
        out.insert("achieved_rate".into(), per(d.sent as f64, d.send_seconds));
        out.insert("deliveries_expected".into(), json!(d.delivered));
        out.insert("deliveries".into(), json!(received));
        out.insert(
            "deliveries_missing".into(),
            json!(d.delivered.saturating_sub(received)),
        );
        out.insert("deliveries_per_second".into(), per(received as f64, window));
        out.insert("delivery_latency_us".into(), stats::summary(&latency));
        out.insert(
            "client_cpu_us_per_delivery".into(),
            per(client_cpu * 1e6, received as f64),
        );
        if let Some(cpu) = server_cpu {
            out.insert(
                "server_cpu_us_per_delivery".into(),
                per(cpu * 1e6, received as f64),
            );
        }
        human.push(format!(
            "sent {} in {:.1} s ({} /s), {} of {} deliveries, {:.0} deliveries/s",
            d.sent,
            d.send_seconds,
            out["achieved_rate"],
            received,
            d.delivered,
            if window > 0.0 {
                received as f64 / window
            } else {
                0.0
            }
        ));
        human.push(format!("per delivery: {}", stats::human(&latency)));
        if cli.fan().is_some() {
            // Per notification: until the last member got it.
            let mut per_notification = stats::histogram();
            let mut complete = 0u64;
            let mut incomplete = 0u64;
            let seqs: Vec<&Vec<Value>> = results
                .iter()
                .filter_map(|r| r.get("seqs").and_then(Value::as_array))
                .collect();
            for seq in 0..d.sent.min(d.per_seq.len() as u64) {
                let expected = u64::from(d.per_seq[seq as usize].load(Relaxed));
                let (mut count, mut max) = (0u64, 0u64);
                for worker in &seqs {
                    if let Some(pair) = worker.get(seq as usize) {
                        count += pair.get(0).and_then(Value::as_u64).unwrap_or(0);
                        max = max.max(pair.get(1).and_then(Value::as_u64).unwrap_or(0));
                    }
                }
                if expected > 0 && count >= expected {
                    complete += 1;
                    per_notification.saturating_record(max.max(1));
                } else {
                    incomplete += 1;
                }
            }
            out.insert("notifications_complete".into(), json!(complete));
            out.insert("notifications_incomplete".into(), json!(incomplete));
            out.insert("timed_out".into(), json!(d.timed_out));
            out.insert(
                "notification_latency_us".into(),
                stats::summary(&per_notification),
            );
            human.push(format!(
                "per notification (last member): {}",
                stats::human(&per_notification)
            ));
            if let Some(path) = cli.fan().and_then(|f| f.compare_raw.as_ref()) {
                let raw_rate = std::fs::read(path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v.get("deliveries_per_second").and_then(Value::as_f64));
                let ratio = match (raw_rate, out["deliveries_per_second"].as_f64()) {
                    (Some(raw), Some(ours)) if raw > 0.0 => json!(round(ours / raw, 4)),
                    _ => Value::Null,
                };
                out.insert("raw_deliveries_per_second".into(), json!(raw_rate));
                out.insert("ratio_to_raw".into(), ratio.clone());
                human.push(format!("ratio to raw: {ratio}"));
            }
        }
    }

    if let Mode::Churn(_) = &cli.mode {
        let churns: Vec<&Value> = results
            .iter()
            .filter_map(|r| r.get("churn"))
            .filter(|c| c.is_object())
            .collect();
        let total = |f: &str| -> u64 { churns.iter().filter_map(|c| c[f].as_u64()).sum() };
        let elapsed = churns
            .iter()
            .filter_map(|c| c["elapsed_seconds"].as_f64())
            .fold(0.0, f64::max);
        let mut connect_latency: Histogram<u64> = stats::histogram();
        for c in &churns {
            stats::add_json(&mut connect_latency, &c["connect_latency"]);
        }
        let connects = total("connects");
        out.insert("churn_connects".into(), json!(connects));
        out.insert(
            "churn_connect_failures".into(),
            json!(total("connect_failures")),
        );
        out.insert("churn_disconnects".into(), json!(total("disconnects")));
        out.insert(
            "churn_disconnect_failures".into(),
            json!(total("disconnect_failures")),
        );
        out.insert("churn_seconds".into(), json!(round(elapsed, 3)));
        out.insert("connects_per_second".into(), per(connects as f64, elapsed));
        out.insert(
            "connect_latency_us".into(),
            stats::summary(&connect_latency),
        );
        if let Some(cpu) = server_cpu {
            out.insert(
                "server_cpu_us_per_connect".into(),
                per(cpu * 1e6, connects as f64),
            );
        }
        out.insert(
            "client_cpu_us_per_connect".into(),
            per(client_cpu * 1e6, connects as f64),
        );
        human.push(format!(
            "{connects} connect+disconnect cycles in {elapsed:.1} s: {} connects/s, {} failed; connect {}",
            out["connects_per_second"],
            total("connect_failures"),
            stats::human(&connect_latency)
        ));
    }

    out.insert("window_seconds".into(), json!(round(window_seconds, 3)));
    out.insert("error_count".into(), json!(errors.total()));
    out.insert("errors".into(), errors.to_json());
    eprintln!(
        "{} {}: {connected} connections, {lost} lost, {} errors",
        cli.mode_name(),
        cli.common.url,
        errors.total()
    );
    for line in human {
        eprintln!("  {line}");
    }
    println!("{}", Value::Object(out));
    Ok(())
}

/// Fan-out (over the server, or raw): go, send, drain, and the mode's own fields.
#[allow(clippy::too_many_arguments)]
async fn fan_run(
    args: &FanArgs,
    send: SendFn,
    members: u64,
    workers: &mut Workers,
    board: &Arc<Board>,
    complete: &mut mpsc::UnboundedReceiver<u64>,
    out: &mut Map<String, Value>,
) -> Result<Driven> {
    if args.in_flight.is_some() && members == 0 {
        bail!("no connection is a member of the organization: nothing would complete");
    }
    out.insert("members".into(), json!(members));
    match args.in_flight {
        Some(w) => out.insert("in_flight".into(), json!(w)),
        None => out.insert("target_rate".into(), json!(args.rate)),
    };
    workers.tell("go").await;
    let plan = DrivePlan {
        rate: args.rate,
        in_flight: args.in_flight,
        duration: args.duration,
        concurrency: args.send_concurrency,
        max: args.max_notifications,
        timeout: args.notification_timeout,
    };
    let track = usize::try_from(args.max_notifications).unwrap_or(usize::MAX);
    let d = drive(plan, send, track, complete).await;
    let expected = d.delivered;
    board
        .wait(args.drain, |s| s.received.iter().sum::<u64>() >= expected)
        .await;
    Ok(d)
}
