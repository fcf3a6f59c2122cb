//! A real etcd for a test: Debian's `etcd` (package `etcd-server`, which
//! `scripts/ensure_deps.sh` installs) on free loopback ports with a data
//! dir of its own, killed and cleaned up when the guard drops, also when
//! the test fails.

// Each test binary that includes this file uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use brpc_stream::etcd::{Client, ClientOptions};

pub struct Etcd {
    child: Child,
    dir: PathBuf,
    /// "127.0.0.1:port" of its client URL.
    pub endpoint: String,
    peer_port: u16,
}

fn spawn(dir: &std::path::Path, client_port: u16, peer_port: u16) -> Child {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.join("etcd.log")).expect("create the etcd log");
    let mut command = Command::new(etcd_binary());
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing
    // else between fork and exec.
    unsafe {
        // A test process killed outright (a harness timeout) takes etcd with
        // it: the guard's drop never runs then. (The signal follows the
        // thread that spawned etcd, which is the test's, owning the guard.)
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let spawned = command
        .arg("--name=test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .arg("--log-level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(err) => panic!(
            "cannot run {}: {err}; install etcd-server (bash scripts/ensure_deps.sh) or set ETCD_BIN",
            etcd_binary()
        ),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

fn etcd_binary() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_string())
}

impl Etcd {
    /// Starts etcd and waits until it answers (up to 30 s; a start that
    /// lost its ports to another process is tried again on new ones).
    pub fn start() -> Etcd {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let mut last = String::new();
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "brpc_etcd_test_{}_{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the data dir's parent");
            let (client_port, peer_port) = (free_port(), free_port());
            let child = spawn(&dir, client_port, peer_port);
            let mut etcd = Etcd { child, dir, endpoint: format!("127.0.0.1:{client_port}"), peer_port };
            match etcd.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return etcd,
                Err(why) => last = why,
            }
        }
        panic!("etcd did not start: {last}");
    }

    /// Starts a killed etcd again on its ports and data.
    pub fn restart(mut self) -> Etcd {
        self.kill();
        let client_port = self.endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        let started = Instant::now();
        loop {
            self.child = spawn(&self.dir, client_port, self.peer_port);
            match self.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return self,
                // The old ports may linger a moment.
                Err(why) if started.elapsed() > Duration::from_secs(30) => panic!("etcd did not restart: {why}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let client = self.client();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                return Err(format!("it exited with {status}: {log}"));
            }
            match client.range_prefix(b"/") {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() > deadline => return Err(err.text),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoint)
    }

    pub fn client(&self) -> Client {
        Client::new(vec![self.endpoint.clone()], ClientOptions::default()).expect("a client")
    }

    /// Kills etcd now (what a crashed etcd looks like to its clients).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
