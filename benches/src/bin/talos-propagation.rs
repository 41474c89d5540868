//! Revocation propagation benchmark: how long after a revoke is sent through the admin plane
//! does every data plane reject the key?
//!
//! Starts the real binary in one of three deployments — `serve` (one process), `redb` (one
//! admin and N check processes on one redb file), `postgres` (the same over PostgreSQL, in a
//! schema of its own) — issues the keys, waits until every check plane verifies them, then
//! revokes them one by one. For each, it polls every check plane's verify over a keep-alive
//! connection until the answer is REVOKED, and records the time from sending the revoke.
//!
//! ```text
//! cargo run --release -p talos-benches --bin talos-propagation -- \
//!     --binary target/release/talos --mode redb --revocations 1000 --checks 2
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "propagation-bench-secret-0123456789abcdef";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Args {
    binary: PathBuf,
    mode: String,
    revocations: usize,
    checks: usize,
    refresh: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        binary: PathBuf::from("target/release/talos"),
        mode: "serve".into(),
        revocations: 1000,
        checks: 2,
        refresh: "100ms".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--binary" => args.binary = PathBuf::from(value()?),
            "--mode" => args.mode = value()?,
            "--revocations" => args.revocations = value()?.parse().map_err(|_| "--revocations: a number")?,
            "--checks" => args.checks = value()?.parse().map_err(|_| "--checks: a number")?,
            "--refresh-interval" => args.refresh = value()?,
            "-h" | "--help" => {
                println!(
                    "talos-propagation [--binary PATH] [--mode serve|redb|postgres] [--revocations N] \
                     [--checks N] [--refresh-interval 100ms]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !["serve", "redb", "postgres"].contains(&args.mode.as_str()) {
        return Err("--mode must be serve, redb or postgres".into());
    }
    Ok(args)
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn { stream, buf: Vec::with_capacity(8192) }
    }

    /// Sends a POST and returns (status, body).
    fn post(&mut self, path: &str, body: &str) -> (u16, String) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).expect("write");
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = resp.parse(&self.buf) {
                let len: usize = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= head + len {
                    let status = resp.code.unwrap_or(0);
                    return (status, String::from_utf8_lossy(&self.buf[head..head + len]).into_owned());
                }
            }
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `talos serve <plane>` and returns it with its address.
fn start(binary: &PathBuf, config: &PathBuf, plane: Option<&str>) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(binary);
    cmd.arg("serve");
    if let Some(plane) = plane {
        cmd.arg(plane);
    }
    let mut child =
        cmd.arg("--config").arg(config).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("talos exited before listening").expect("read the log");
        if line.contains(" listening ") {
            let addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).expect("addr=");
            break addr.parse().expect("an address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), addr)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("talos-propagation: {e}");
            std::process::exit(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("talos-propagation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let schema = format!("talos_bench_{}", std::process::id());
    let dsn = match args.mode.as_str() {
        "postgres" => {
            let mut client =
                postgres::Client::connect(POSTGRES, postgres::NoTls).expect("PostgreSQL at 127.0.0.1:5432");
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
                .expect("schema");
            format!("{POSTGRES}?options=-csearch_path%3D{schema}")
        }
        "redb" => dir.join("talos.redb").display().to_string(),
        _ => "memory".into(),
    };
    let config = dir.join("talos.yaml");
    std::fs::write(
        &config,
        format!(
            "serve:\n  http: {{ host: 127.0.0.1, port: 0 }}\n  metrics: {{ host: 127.0.0.1, port: 0 }}\n  workers: 1\ncredentials:\n  issuer: http://bench\n  api_keys: {{ default_ttl: 24h }}\n\
             secrets:\n  hmac: {{ current: \"{SECRET}\" }}\ndb: {{ dsn: \"{dsn}\" }}\nsnapshot: {{ refresh_interval: {} }}\nlog: {{ level: info, format: text }}\n",
            args.refresh
        ),
    )
    .expect("config");

    let mut procs = Vec::new();
    let (admin_addr, check_addrs) = if args.mode == "serve" {
        let (p, addr) = start(&args.binary, &config, None);
        procs.push(p);
        (addr, vec![addr])
    } else {
        let (p, admin) = start(&args.binary, &config, Some("admin"));
        procs.push(p);
        let mut checks = Vec::new();
        for _ in 0..args.checks {
            let (p, addr) = start(&args.binary, &config, Some("check"));
            procs.push(p);
            checks.push(addr);
        }
        (admin, checks)
    };

    let mut admin = Conn::open(admin_addr);
    let mut checks: Vec<Conn> = check_addrs.iter().map(|a| Conn::open(*a)).collect();
    eprintln!("issuing {} keys ({} deployment, {} data plane(s))", args.revocations, args.mode, checks.len());
    let mut keys = Vec::with_capacity(args.revocations);
    for _ in 0..args.revocations {
        let (status, body) = admin.post("/v2alpha1/admin/issuedApiKeys", r#"{"name":"bench"}"#);
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        keys.push((
            v["issued_api_key"]["key_id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        ));
    }
    let verify_body = |secret: &str| format!(r#"{{"credential":"{secret}"}}"#);
    // Every data plane must know the last key before the clock starts.
    let last = verify_body(&keys.last().expect("keys").1);
    for check in &mut checks {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check.post("/v2alpha1/admin/apiKeys:verify", &last).1.contains("\"is_valid\":true") {
            assert!(Instant::now() < deadline, "a data plane never saw the keys");
        }
    }

    eprintln!("revoking");
    let mut times = Vec::with_capacity(keys.len());
    for (key_id, secret) in &keys {
        let body = verify_body(secret);
        let started = Instant::now();
        let (status, text) = admin.post(
            &format!("/v2alpha1/admin/issuedApiKeys/{key_id}:revoke"),
            r#"{"reason":"REVOCATION_REASON_KEY_COMPROMISE"}"#,
        );
        assert_eq!(status, 204, "{text}");
        for check in &mut checks {
            loop {
                let (_, answer) = check.post("/v2alpha1/admin/apiKeys:verify", &body);
                if answer.contains("VERIFICATION_ERROR_REVOKED") {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "a revocation never arrived");
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{{\"mode\":\"{}\",\"data_planes\":{},\"revocations\":{},\"refresh_interval\":\"{}\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        args.mode,
        checks.len(),
        times.len(),
        args.refresh,
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().expect("times"))
    );
    drop(procs);
    if args.mode == "postgres" {
        if let Ok(mut client) = postgres::Client::connect(POSTGRES, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
