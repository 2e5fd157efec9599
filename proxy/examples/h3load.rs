//! A small HTTP/3 load generator for the TLS load harness (`benches/load/tls.sh`):
//! Debian's h2load is built without HTTP/3, and Python clients measure themselves.
//! Like `h2load -c C -m M -D S`: C QUIC connections, M requests in flight on each, for
//! S seconds (after one second of warm-up); prints requests/s and latency percentiles.
//!
//! `cargo run --release -p weft --example h3load -- https://host:port/path
//!  --connect 127.0.0.1 --ca ca.pem [-c 8] [-m 16] [-d 10]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

struct Args {
    url: http::Uri,
    connect: SocketAddr,
    ca: String,
    connections: usize,
    streams: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let (mut connect, mut ca) = (None, None);
    let (mut connections, mut streams, mut seconds) = (8, 16, 10);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("a value after each flag");
        match a.as_str() {
            "--connect" => connect = Some(value()),
            "--ca" => ca = Some(value()),
            "-c" => connections = value().parse().expect("-c N"),
            "-m" => streams = value().parse().expect("-m N"),
            "-d" => seconds = value().parse().expect("-d SECONDS"),
            _ => url = Some(a),
        }
    }
    let url: http::Uri = url.expect("a URL").parse().expect("a valid URL");
    let port = url.port_u16().unwrap_or(443);
    let host = connect.unwrap_or_else(|| url.host().unwrap_or("127.0.0.1").to_owned());
    Args {
        connect: format!("{host}:{port}").parse().expect("--connect IP"),
        ca: ca.expect("--ca ca.pem"),
        url,
        connections,
        streams,
        seconds,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&a.ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let host = a.url.host().unwrap_or("localhost").to_owned();

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(1);
    let until = measure_from + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let conn = endpoint.connect(a.connect, &host)?.await?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        for _ in 0..a.streams {
            let mut send = send.clone();
            let url = a.url.clone();
            tasks.push(tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < until {
                    let began = Instant::now();
                    let req = http::Request::get(url.clone()).body(()).expect("a request");
                    let done = async {
                        let mut stream = send.send_request(req).await.ok()?;
                        stream.finish().await.ok()?;
                        let resp = stream.recv_response().await.ok()?;
                        while stream.recv_data().await.ok()?.is_some() {}
                        Some(resp.status())
                    };
                    match done.await {
                        Some(s) if s.is_success() => {
                            if began >= measure_from {
                                latencies.push(began.elapsed().as_micros() as u64);
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests {} errors {} requests/s {:.1} p50_us {} p99_us {}",
        all.len(),
        errors,
        all.len() as f64 / a.seconds as f64,
        pct(0.50),
        pct(0.99)
    );
    endpoint.close(0u32.into(), b"done");
    Ok(())
}
