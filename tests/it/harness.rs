//! Starts the real `talos` binary on `127.0.0.1:0` with a config of the test's own, and talks to
//! it over real sockets. Everything the server writes (stderr and stdout) is captured so tests can
//! assert on it (and scan it for secrets).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const OTHER_SECRET: &str = "integration-test-other-secret-0123456789";

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("talos-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The YAML config of a test server; `extra` is appended verbatim.
pub fn config(dsn: &str, secrets_yaml: &str, extra: &str) -> String {
    format!(
        "serve:\n  http:\n    host: 127.0.0.1\n    port: 0\n  metrics:\n    host: 127.0.0.1\n    port: 0\n  workers: 2\n\
         credentials:\n  issuer: http://talos.test\n  api_keys:\n    default_ttl: 720h\n\
         secrets:\n  hmac:\n{secrets_yaml}\n\
         db:\n  dsn: \"{dsn}\"\n\
         snapshot:\n  refresh_interval: 50ms\n\
         last_used:\n  flush_interval: 50ms\n\
         log:\n  level: info\n  format: text\n{extra}"
    )
}

pub fn secrets(current: &str) -> String {
    format!("    current: \"{current}\"")
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The operations listener (`serve.metrics`): `/metrics` and health probes.
    pub metrics_addr: SocketAddr,
    log: Arc<Mutex<String>>,
    _dir: Option<TempDir>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_talos")
}

impl Server {
    /// `talos serve` with an in-memory store.
    pub fn start() -> Server {
        Server::start_yaml(&config("memory", &secrets(SECRET), ""))
    }

    /// `talos serve` with the config `yaml`, written to a temporary directory of its own.
    pub fn start_yaml(yaml: &str) -> Server {
        let dir = TempDir::new();
        let mut s = Server::start_with(&dir.path("talos.yaml"), yaml, &[]);
        s._dir = Some(dir);
        s
    }

    /// Writes `yaml` to `config_path` and runs `talos serve <args…> --config config_path`.
    pub fn start_with(config_path: &Path, yaml: &str, args: &[&str]) -> Server {
        std::fs::write(config_path, yaml).unwrap();
        let mut child = Command::new(binary())
            .arg("serve")
            .args(args)
            .arg("--config")
            .arg(config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the talos binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let metrics_addr = Arc::new(Mutex::new(None));
        // Both streams go to the one log, line by line; only a "listening" line on stderr
        // announces the address (and an earlier line the operations listener's).
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let metrics_sink = metrics_addr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = logged_addr(&line, "metrics_addr") {
                    *metrics_sink.lock().unwrap() = Some(addr);
                }
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("talos did not start listening; log:\n{}", log.lock().unwrap());
            }
        };
        // The operations listener is bound (and logged) before the planes' listener.
        let metrics_addr = metrics_addr.lock().unwrap().expect("talos logged its metrics address before listening");
        Server { child, addr, metrics_addr, log, _dir: None }
    }

    /// Everything the server wrote so far, stdout and stderr interleaved by line.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], "")
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        request(self.addr, "POST", path, &[("content-type", "application/json")], &body.to_string())
    }

    pub fn issue(&self, body: &Value) -> (String, String) {
        let resp = self.post("/v2alpha1/admin/issuedApiKeys", body);
        assert_eq!(resp.status, 201, "{}", resp.text);
        let json = resp.json();
        (json["issued_api_key"]["key_id"].as_str().unwrap().to_owned(), json["secret"].as_str().unwrap().to_owned())
    }

    pub fn verify(&self, credential: &str) -> Value {
        let resp = self.post("/v2alpha1/admin/apiKeys:verify", &serde_json::json!({ "credential": credential }));
        assert_eq!(resp.status, 200, "{}", resp.text);
        resp.json()
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "talos did not exit after SIGTERM");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

/// The address of a "listening" log line, text (`addr=…`) or JSON (`"addr":"…"`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    logged_addr(line, "addr")
}

/// The address in the log field `field`, from a text (`field=…`) or JSON log line.
fn logged_addr(line: &str, field: &str) -> Option<SocketAddr> {
    let prefix = format!("{field}=");
    if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix(prefix.as_str())) {
        return addr.parse().ok();
    }
    let json: Value = serde_json::from_str(line).ok()?;
    json["fields"][field].as_str()?.parse().ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Asserts the Talos error envelope with this status and reason.
    pub fn assert_error(&self, status: u16, reason: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        let json = self.json();
        assert_eq!(json["error"]["code"], status, "{}", self.text);
        assert_eq!(json["error"]["details"][0]["reason"], reason, "{}", self.text);
        assert_eq!(json["error"]["details"][0]["domain"], "www.ory.com/talos");
        assert!(!json["error"]["message"].as_str().unwrap().is_empty());
        assert!(self.header("content-type").unwrap().starts_with("application/json"));
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: talos.test\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PATCH" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    parse_response(&raw(addr, req.as_bytes()))
}

/// Sends raw bytes, half-closes, and reads until the server closes.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(bytes).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Parses one response; panics on anything malformed.
pub fn parse_response(bytes: &[u8]) -> Resp {
    parse_responses(bytes)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no response in {:?}", String::from_utf8_lossy(bytes)))
}

/// Parses every response in `bytes` (pipelining), framed by Content-Length.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(bytes).expect("a valid HTTP response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("truncated response: {:?}", String::from_utf8_lossy(bytes)),
        };
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let status = resp.code.unwrap();
        let len: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        let body = &bytes[head_len..head_len + len];
        out.push(Resp { status, headers, text: String::from_utf8_lossy(body).into_owned() });
        bytes = &bytes[head_len + len..];
    }
    out
}

/// The value of one sample (`name{labels}` exactly as exposed) in a `/metrics` text, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `f` until it returns `Some`, or panics after `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {limit:?}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}
