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
    /// Dropping it stops the proxy's thread.
    _stop: std::sync::mpsc::Sender<()>,
}

impl Proxy {
    /// Forwards a fresh local port to `target` (`host:port`). The proxy runs on a thread of its own, so it
    /// works from sync and async tests alike.
    pub fn start(target: &str) -> Proxy {
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel();
        let (target, gate, cuts) = (target.to_string(), open.clone(), cut.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
                ready.send(listener.local_addr().expect("proxy address")).expect("test waits");
                let accept = async {
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
                };
                let stop = tokio::task::spawn_blocking(move || {
                    let _ = stopped.recv();
                });
                tokio::select! {
                    _ = accept => {}
                    _ = stop => {}
                }
            });
        });
        let addr = bound.recv().expect("proxy started");
        Proxy { addr, open, cut, _stop: stop }
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
