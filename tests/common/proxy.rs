#![allow(dead_code)]
//! A TCP proxy the tests put between Kassa and a target (PostgreSQL, MariaDB, Redis, Kafka) to take the
//! target away and bring it back without touching the shared service: `down()` cuts every open connection
//! and refuses new ones; `up()` lets them through again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// Forwards a fresh local port to `target` (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("proxy runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let target = target.to_string();
        let (gate, cuts) = (open.clone(), cut.clone());
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                if !gate.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let mut cut = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
                    let mut client = client;
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, open, cut, _runtime: runtime }
    }

    /// The target is gone: open connections are cut, new ones closed at once.
    pub fn down(&self) {
        self.open.store(false, Ordering::Release);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn up(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Cuts open connections but keeps accepting: the adapter reconnects at once.
    pub fn reset(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }
}
