//! A minimal HTTP/1.1 keep-alive client: one connection, one request in flight, reconnect on failure.
//! Each load worker owns one, so "N connections" means exactly N TCP connections.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::errors::OpError;

/// An answer: status and the whole body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
}

pub struct HttpClient {
    addr: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far (1 in a healthy run).
    pub connects: u64,
}

impl HttpClient {
    pub fn new(addr: SocketAddr, bearer: Option<&str>, timeout: Duration) -> HttpClient {
        let host = HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header value");
        let authorization = bearer.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
        HttpClient { addr, host, authorization, timeout, sender: None, connects: 0 }
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, OpError> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| OpError::Connect(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| OpError::Connect(e.to_string()))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| OpError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; errors surface on the next request.
            let _ = conn.await;
        });
        self.connects += 1;
        Ok(sender)
    }

    /// Sends one request and reads the whole answer, within the timeout (connect included).
    pub async fn request(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<HttpResponse, OpError> {
        match tokio::time::timeout(self.timeout, self.request_inner(method, path, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                // The connection may still carry the late answer: never reuse it.
                self.sender = None;
                Err(OpError::Timeout)
            }
        }
    }

    async fn request_inner(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<HttpResponse, OpError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| OpError::Io(e.to_string()))?;
        let has_body = body.is_some();
        let mut builder = Request::builder().method(method).uri(path).header(header::HOST, self.host.clone());
        if let Some(auth) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, auth.clone());
        }
        if has_body {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default())).map_err(|e| OpError::BadResponse(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| OpError::Io(e.to_string()))?;
        let status = response.status().as_u16();
        let keep = !response.headers().get(header::CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response.into_body().collect().await.map_err(|e| OpError::Io(e.to_string()))?.to_bytes();
        if keep {
            self.sender = Some(sender);
        }
        Ok(HttpResponse { status, body })
    }

    /// A request whose status must be one of `expected`; any other status is an error.
    pub async fn expect(&mut self, method: Method, path: &str, body: Option<Bytes>, expected: &[u16]) -> Result<HttpResponse, OpError> {
        let r = self.request(method, path, body).await?;
        if expected.contains(&r.status) { Ok(r) } else { Err(OpError::Status(r.status)) }
    }

    pub async fn get(&mut self, path: &str) -> Result<HttpResponse, OpError> {
        self.expect(Method::GET, path, None, &[200]).await
    }

    pub async fn post_json(&mut self, path: &str, body: impl Into<Bytes>, expected: &[u16]) -> Result<HttpResponse, OpError> {
        self.expect(Method::POST, path, Some(body.into()), expected).await
    }
}

/// Parses a JSON answer into `T`, as a counted error when it does not fit.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpError> {
    serde_json::from_slice(body).map_err(|e| {
        let head: String = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        OpError::BadResponse(format!("{e}: {head}"))
    })
}
