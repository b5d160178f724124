//! Command line: options shared by every mode, then one subcommand per measurement.
//!
//! The shared options are `global`, so they may come before or after the mode name. The
//! hidden `--worker-*` options are how the parent starts copies of itself as workers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "pushwarden-bench",
    version,
    about = "Load generator for SignalR hubs (pushwarden or any other server)",
    long_about = "Opens N connections with the project's own SignalR client and measures one thing \
                  per mode. One JSON result goes to stdout, a short summary to stderr. Everything \
                  is bounded in count and time."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub mode: Mode,
    /// (internal) this process is worker I of --worker-count.
    #[arg(long, global = true, hide = true)]
    pub worker_index: Option<usize>,
    /// (internal) number of workers.
    #[arg(long, global = true, hide = true, default_value_t = 1)]
    pub worker_count: usize,
    /// (internal) where the raw mode's writer listens.
    #[arg(long, global = true, hide = true)]
    pub raw_addr: Option<SocketAddr>,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Hub URL (http://host:port/path). Any SignalR hub; tokens are minted as Bitwarden's.
    #[arg(long, global = true, default_value = "http://127.0.0.1:5555/hub")]
    pub url: String,
    /// `/send` URL; default: the hub URL's origin + `/send`.
    #[arg(long, global = true)]
    pub send_url: Option<String>,
    /// Static bearer key for `/send` (the server's PUSHWARDEN_SEND_API_KEY).
    #[arg(long, global = true)]
    pub send_key: Option<String>,
    /// Connections to open and hold (in total, over all processes).
    #[arg(short = 'n', long, global = true, default_value_t = 100)]
    pub connections: usize,
    /// Worker processes to spread the connections over (each opens its share).
    #[arg(long, global = true, default_value_t = 1)]
    pub processes: usize,
    /// Hub protocol.
    #[arg(long, global = true, value_enum, default_value_t = ProtocolArg::Messagepack)]
    pub protocol: ProtocolArg,
    /// Distinct users (`sub`); connection i belongs to user i mod U. Default: one per connection.
    #[arg(long, global = true)]
    pub users: Option<usize>,
    /// Distinct organizations; connection i lists org i mod O in `orguser`. Fan-out targets org 0.
    #[arg(long, global = true, default_value_t = 1)]
    pub orgs: usize,
    /// Sign tokens with HS256 and this secret.
    #[arg(long, global = true)]
    pub secret: Option<String>,
    /// Sign tokens with RS256 and this PEM private key (takes precedence over --secret).
    #[arg(long, global = true)]
    pub rsa_private_key: Option<PathBuf>,
    /// `iss` claim of the tokens (Vaultwarden checks `<DOMAIN>|login`).
    #[arg(long, global = true)]
    pub issuer: Option<String>,
    /// Source addresses to spread connections over (127.0.0.2, 127.0.0.3, ...); 0: let the kernel choose.
    #[arg(long, global = true, default_value_t = 64)]
    pub source_ips: u32,
    /// First source address.
    #[arg(long, global = true, default_value = "127.0.0.2")]
    pub first_source_ip: Ipv4Addr,
    /// Connection attempts in flight at once, per process.
    #[arg(long, global = true, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Give up on one connection attempt after this long.
    #[arg(long, global = true, value_parser = duration, default_value = "30s")]
    pub connect_timeout: Duration,
    /// Negotiate first (POST /negotiate) instead of connecting the WebSocket directly.
    #[arg(long, global = true)]
    pub negotiate: bool,
    /// The server's process id: its VmRSS (idle) and CPU time are read from /proc.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Each held connection sends a SignalR Ping this often (real clients: 15 s).
    #[arg(long, global = true, value_parser = duration, default_value = "15s")]
    pub ping_interval: Duration,
    /// Tokio worker threads per process.
    #[arg(long, global = true, default_value_t = 2)]
    pub threads: usize,
    /// Give up if the workers have not opened their connections after this long.
    #[arg(long, global = true, value_parser = duration, default_value = "300s")]
    pub ready_timeout: Duration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolArg {
    Messagepack,
    Json,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// Hold the connections; report the server's resident memory per connection.
    Idle(IdleArgs),
    /// /send to single users at a set rate; end-to-end latency (post -> ReceiveMessage).
    Unicast(UnicastArgs),
    /// Notifications to one organization whose members are all connections.
    Fanout(FanArgs),
    /// Connect + disconnect cycles per second (token verification included).
    Churn(ChurnArgs),
    /// The raw ceiling: pre-encoded frames written to as many plain loopback sockets.
    Raw(RawArgs),
    /// The push gateway: devices registered over /push/register, /push/send to their users,
    /// delivered by the server to an in-process fake FCM; accept and delivery latency,
    /// deliveries/s against a direct FCM client (the provider ceiling).
    ///
    /// The fake starts first and its service account is written before the readiness line on
    /// stderr; then the bench waits for the server at --url (only its origin is used) to answer
    /// /alive. Devices are spread over --users (default 100 here): device i belongs to user
    /// i mod U, and send s goes to user s mod U. -n, --processes and the token options do not
    /// apply.
    Push(PushArgs),
    /// Organization-wide pushes through the relay, and fairness between installations: the
    /// bench hosts fake FCM, APNs and Web Push and writes what the server needs into --dir
    /// (`server.env` last); installation A registers --org-devices devices in one
    /// organization (mixed platforms) and sends --org-pushes organization pushes, while
    /// installation B's single-device pushes measure send -> provider before and during them.
    /// The result is checked delivery by delivery and set against the provider clients alone.
    PushOrg(PushOrgArgs),
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Wait this long after every connection is up before reading the server's memory.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub settle: Duration,
    /// Then hold the connections this much longer (checks that they stay up).
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub hold: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct UnicastArgs {
    /// Notifications per second (each to one user chosen at random).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to send.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// After sending, wait at most this long for the last deliveries.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub drain: Duration,
    /// /send requests in flight at most.
    #[arg(long, default_value_t = 64)]
    pub send_concurrency: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FanArgs {
    /// Notifications per second (ignored with --in-flight).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Maximum throughput: keep this many notifications in flight (sent, not yet delivered
    /// to every member) instead of a fixed rate.
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// How long to send.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// After sending, wait at most this long for the last deliveries.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub drain: Duration,
    /// Requests in flight at most (rate mode).
    #[arg(long, default_value_t = 64)]
    pub send_concurrency: usize,
    /// Never send more notifications than this.
    #[arg(long, default_value_t = 100_000)]
    pub max_notifications: u64,
    /// With --in-flight: a notification not delivered to every member after this long
    /// frees its slot and counts as incomplete.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub notification_timeout: Duration,
    /// A `raw` result (JSON file) to report deliveries/s as a ratio of.
    #[arg(long)]
    pub compare_raw: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Connects per second over all processes; 0: as fast as --concurrency allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Connect/disconnect cycles in flight at once, over all processes.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long to churn.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// Distinct tokens minted (per process) before the timed window and used in turn.
    #[arg(long, default_value_t = 2000)]
    pub tokens: usize,
}

#[derive(Args, Debug, Clone)]
pub struct RawArgs {
    #[command(flatten)]
    pub fan: FanArgs,
    /// Where the writer listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// `/push/send` pacing: a rate, or as fast as the concurrency allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushRate(pub Option<f64>);

fn push_rate(s: &str) -> Result<PushRate, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(PushRate(None));
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(PushRate(Some(r))),
        _ => Err(format!("{s:?} is neither a positive rate nor `max`")),
    }
}

/// The push gateway benchmark (see [`Mode::Push`]).
#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// Where the fake FCM (and its OAuth token endpoint) listens: the server's
    /// PUSHWARDEN_FCM_ENDPOINT is `http://` this address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub fake_listen: SocketAddr,
    /// Where to write the fake's service-account JSON (the server's
    /// PUSHWARDEN_FCM_SERVICE_ACCOUNT). Written before the readiness line on stderr.
    #[arg(long)]
    pub service_account: PathBuf,
    /// Android devices to register (distinct FCM tokens).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// `/push/send` requests to make (each to one user: devices/users deliveries).
    #[arg(long, default_value_t = 5000)]
    pub sends: u64,
    /// `/push/send` requests per second, or `max`: as fast as --send-concurrency allows.
    #[arg(long, value_parser = push_rate, default_value = "max")]
    pub rate: PushRate,
    /// `/push/send` requests in flight at most.
    #[arg(long, default_value_t = 16)]
    pub send_concurrency: usize,
    /// `/push/register` requests in flight at most.
    #[arg(long, default_value_t = 16)]
    pub register_concurrency: usize,
    /// Deliveries in flight in the direct-FCM baseline; the server's default
    /// PUSHWARDEN_PUSH_CONCURRENCY is 64.
    #[arg(long, default_value_t = 64)]
    pub baseline_concurrency: usize,
    /// Skip the direct-FCM baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// After the last `/push/send` is answered, wait at most this long for the deliveries.
    #[arg(long, value_parser = duration, default_value = "60s")]
    pub drain: Duration,
    /// Read the server's pid from this file once the server answers (for scripts that start
    /// the server after the bench); like --server-pid.
    #[arg(long)]
    pub server_pid_file: Option<PathBuf>,
}

/// How installation A's organization devices are registered.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgRegister {
    /// Each device with A's installation token, as a relayed vault server registers them.
    Relay,
    /// With the `/send` key (--send-key), the ids already carrying A's prefix, so the rows are
    /// the relay's but for their owner: the relay's per-registration count of the
    /// installation's devices is skipped. The pushes still go through the relay.
    Local,
}

/// The organization push benchmark (see [`Mode::PushOrg`]).
#[derive(Args, Debug, Clone)]
pub struct PushOrgArgs {
    /// Directory for the files the server reads: the FCM service account, the APNs key, the
    /// VAPID key, and `server.env` (the server's variables, one `NAME=value` a line), which
    /// is written last.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where the fake FCM (and its OAuth token endpoint) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub fcm_listen: SocketAddr,
    /// Where the fake APNs listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub apns_listen: SocketAddr,
    /// Where the fake Web Push service listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub webpush_listen: SocketAddr,
    /// Installation A (the organization's), as `pushwarden installation create` printed it
    /// (`id:  …` and `key: …` lines).
    #[arg(long)]
    pub installation_a: PathBuf,
    /// Installation B (the single-device pushes), likewise.
    #[arg(long)]
    pub installation_b: PathBuf,
    /// Devices in A's organization: 50 % Android (FCM), 30 % iOS (APNs), 20 % Web Push.
    #[arg(long, default_value_t = 100_000)]
    pub org_devices: usize,
    /// Organization pushes A sends, one after another (each answered before the next).
    #[arg(long, default_value_t = 5)]
    pub org_pushes: u64,
    /// How A's devices are registered.
    #[arg(long, value_enum, default_value_t = OrgRegister::Local)]
    pub org_register: OrgRegister,
    /// B's devices, each its own user, taking the platforms in turn (FCM, APNs, Web Push).
    #[arg(long, default_value_t = 3)]
    pub b_devices: usize,
    /// B's single-device pushes per second, in both phases.
    #[arg(long, default_value_t = 20.0)]
    pub b_rate: f64,
    /// How long B pushes alone before A's first organization push (the idle figure).
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub idle: Duration,
    /// `/push/register` requests in flight at most.
    #[arg(long, default_value_t = 32)]
    pub register_concurrency: usize,
    /// Deliveries in flight per provider in the baseline (the server's default
    /// PUSHWARDEN_PUSH_CONCURRENCY is 64).
    #[arg(long, default_value_t = 64)]
    pub baseline_concurrency: usize,
    /// Skip the baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// After the last organization push is answered, wait at most this long for its
    /// deliveries.
    #[arg(long, value_parser = duration, default_value = "600s")]
    pub drain: Duration,
    /// Read the server's pid from this file once the server answers.
    #[arg(long)]
    pub server_pid_file: Option<PathBuf>,
}

impl Cli {
    /// Connection indices of this process: `[start, end)` of `0..connections`.
    pub fn share(&self) -> (usize, usize) {
        let index = self.worker_index.unwrap_or(0);
        share(self.common.connections, index, self.worker_count.max(1))
    }

    /// Users; at least 1.
    pub fn users(&self) -> usize {
        self.common.users.unwrap_or(self.common.connections).max(1)
    }

    /// The longest a whole run may take: the hard deadline of every process.
    pub fn deadline(&self) -> Duration {
        let c = &self.common;
        let body = match &self.mode {
            Mode::Idle(a) => a.settle + a.hold,
            Mode::Unicast(a) => a.duration + a.drain,
            Mode::Fanout(a) => a.duration + a.drain + a.notification_timeout,
            Mode::Raw(a) => a.fan.duration + a.fan.drain + a.fan.notification_timeout,
            Mode::Churn(a) => a.duration + Duration::from_secs(35),
            Mode::Push(a) => a.drain + Duration::from_secs(600),
            // Registering 100,000 devices over HTTP takes minutes.
            Mode::PushOrg(a) => a.drain + a.idle + Duration::from_secs(3600),
        };
        c.ready_timeout + body + Duration::from_secs(60)
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Idle(_) => "idle",
            Mode::Unicast(_) => "unicast",
            Mode::Fanout(_) => "fanout",
            Mode::Churn(_) => "churn",
            Mode::Raw(_) => "raw",
            Mode::Push(_) => "push",
            Mode::PushOrg(_) => "push-org",
        }
    }

    /// The fan-out arguments of `fanout` and `raw`.
    pub fn fan(&self) -> Option<&FanArgs> {
        match &self.mode {
            Mode::Fanout(a) => Some(a),
            Mode::Raw(a) => Some(&a.fan),
            _ => None,
        }
    }
}

/// Part `index` of `total` items split over `parts`: `[start, end)`, sizes differ by at most 1.
pub fn share(total: usize, index: usize, parts: usize) -> (usize, usize) {
    let start = total * index / parts;
    let end = total * (index + 1) / parts;
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything() {
        for parts in 1..5 {
            let mut next = 0;
            for i in 0..parts {
                let (s, e) = share(10, i, parts);
                assert_eq!(s, next);
                next = e;
            }
            assert_eq!(next, 10);
        }
    }

    #[test]
    fn global_options_anywhere() {
        let cli = Cli::try_parse_from([
            "b",
            "-n",
            "5",
            "fanout",
            "--rate",
            "3",
            "--processes",
            "2",
            "--worker-index",
            "1",
            "--worker-count",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.common.connections, 5);
        assert_eq!(cli.common.processes, 2);
        assert_eq!(cli.share(), (2, 5));
        assert_eq!(cli.fan().unwrap().rate, 3.0);
    }

    #[test]
    fn push_rates() {
        let parse = |rate: &str| {
            Cli::try_parse_from(["b", "push", "--service-account", "sa.json", "--rate", rate]).map(
                |cli| match cli.mode {
                    Mode::Push(a) => a.rate,
                    _ => unreachable!(),
                },
            )
        };
        assert_eq!(parse("max").unwrap(), PushRate(None));
        assert_eq!(parse("250").unwrap(), PushRate(Some(250.0)));
        assert!(parse("0").is_err());
        assert!(parse("fast").is_err());
    }
}
