//! Listeners: one per core, each on its own single-threaded runtime, all bound to the same address with
//! `SO_REUSEPORT` so the kernel spreads connections across cores without a shared accept queue.
//! Optionally TLS (rustls, ALPN h2 + http/1.1 so gRPC works over it too).

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
    #[error("tls: {0}")]
    Tls(String),
}

/// A TLS server configuration for the listeners.
pub type Tls = Arc<rustls::ServerConfig>;

/// Loads a PEM certificate chain and private key into a TLS configuration that offers HTTP/2 and
/// HTTP/1.1 (ALPN).
pub fn load_tls(cert_file: &std::path::Path, key_file: &std::path::Path) -> Result<Tls, ListenError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| ListenError::Tls(format!("certificates in {}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(ListenError::Tls(format!("no certificate in {}", cert_file.display())));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| ListenError::Tls(format!("private key in {}: {e}", key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ListenError::Tls(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Longest a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest in-flight TLS connections get to finish after a stop.
const TLS_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one core's TLS listener until `stop` turns true, then drains open connections.
async fn serve_tls(listener: tokio::net::TcpListener, router: Router, tls: Tls, mut stop: watch::Receiver<bool>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::Service;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let (acceptor, router, builder) = (acceptor.clone(), router.clone(), builder.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else { return };
                    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        // The same peer address axum::serve would give the rate limiter.
                        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        let mut router = router.clone();
                        async move { router.call(req.map(axum::body::Body::new)).await }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let _ = watcher.watch(connection).await;
                });
            }
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    let _ = tokio::time::timeout(TLS_DRAIN_TIMEOUT, graceful.shutdown()).await;
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
        Self::start_with(addr, cores, factory, None)
    }

    /// `start`, optionally terminating TLS.
    pub fn start_with(addr: SocketAddr, cores: usize, factory: RouterFactory, tls: Option<Tls>) -> Result<Listeners, ListenError> {
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
            let tls = tls.clone();
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
                        if let Some(tls) = tls {
                            serve_tls(listener, factory(), tls, stop_rx).await;
                            return;
                        }
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
