//! Listeners: one per core, each on its own single-threaded runtime, all bound to the same address with
//! `SO_REUSEPORT` so the kernel spreads connections across cores without a shared accept queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

/// Builds the service a core serves. Called once per core, so each runtime owns its own router state.
pub type RouterFactory = Arc<dyn Fn() -> Router + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// A running set of per-core listeners.
pub struct Listeners {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Binds `addr` once per core (`cores` ≥ 1). Port 0 picks a free port for the first listener and
    /// reuses it for the others. HTTP/1.1 and HTTP/2 (h2c, for gRPC) are both served.
    pub fn start(addr: SocketAddr, cores: usize, factory: RouterFactory) -> Result<Listeners, ListenError> {
        assert!(cores >= 1, "at least one listener");
        let first = reuseport_listener(addr).map_err(|source| ListenError::Bind { addr, source })?;
        let bound = first.local_addr().map_err(|source| ListenError::Bind { addr, source })?;
        let mut sockets = vec![first];
        for _ in 1..cores {
            sockets.push(reuseport_listener(bound).map_err(|source| ListenError::Bind { addr: bound, source })?);
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(cores);
        for (i, socket) in sockets.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ListenError::Runtime)?;
            let factory = factory.clone();
            let mut stop_rx = stop_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kassa-http-{}-{i}", bound.port()))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match tokio::net::TcpListener::from_std(socket) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::error!(error = %e, "listener could not join the runtime");
                                return;
                            }
                        };
                        let app = factory().into_make_service_with_connect_info::<SocketAddr>();
                        let shutdown = async move {
                            let _ = stop_rx.wait_for(|stopped| *stopped).await;
                        };
                        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                            tracing::error!(error = %e, "listener stopped with an error");
                        }
                    });
                })
                .map_err(ListenError::Runtime)?;
            threads.push(handle);
        }
        Ok(Listeners { addr: bound, stop, threads })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (up to `grace`), then joins the threads.
    pub fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = std::time::Instant::now() + grace;
        for handle in self.threads {
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}
