//! `weft echo`: a small upstream that answers with what it received, to try weft out.

use std::convert::Infallible;
use std::net::SocketAddr;

use clap::Args;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::ProxyBody;

/// `weft echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// A name to put in answers (to tell several echo servers apart).
    #[arg(long, default_value = "echo")]
    pub name: String,
}

async fn answer(name: String, req: Request<Incoming>) -> Response<ProxyBody> {
    let mut text = format!(
        "{name}: {} {} {:?}\n",
        req.method(),
        req.uri(),
        req.version()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !body.is_empty() {
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&body));
    }
    let mut resp = Response::new(ProxyBody::full(text));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl EchoArgs {
    /// Serves until interrupted.
    pub fn run(self) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = TcpListener::bind(self.listen).await?;
            println!(
                "weft echo: {} on http://{}",
                self.name,
                listener.local_addr()?
            );
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => a?,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                };
                let name = self.name.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let name = name.clone();
                        async move { Ok::<_, Infallible>(answer(name, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
    }
}
