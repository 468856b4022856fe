//! A fault-injecting proxy in front of the stack's S3 server, for what a real server will not
//! do on demand: a 503 storm, and a policy that denies deletes. Everything else is forwarded
//! byte for byte (the Host header is kept, so SigV4 signatures stay valid).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Uploads of data files answer 503 SlowDown until this instant.
    SlowDownUntil(Instant),
    /// Deletes answer 403 AccessDenied, as a policy without s3:DeleteObject does.
    DenyDelete,
    /// Uploads whose path contains this are never answered (held until the client goes away),
    /// so a process can be killed mid-upload at a chosen point.
    HoldUploads(&'static str),
}

/// A running proxy.
pub struct Proxy {
    pub url: String,
    /// Requests answered by the fault instead of the server.
    pub injected: Arc<AtomicU64>,
}

/// Starts a proxy to the S3 server at `upstream` (`http://host:port`).
pub async fn start(upstream: &str, fault: Fault) -> Proxy {
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let injected = Arc::new(AtomicU64::new(0));
    let count = injected.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let _ = serve(conn, &upstream, fault, &count).await;
            });
        }
    });
    Proxy { url, injected }
}

fn is_data_upload(method: &str, target: &str) -> bool {
    method == "PUT" && (target.contains("/metric=") || target.contains("/metric%3D"))
}

fn is_delete(method: &str, target: &str) -> bool {
    method == "DELETE" || (method == "POST" && target.contains("delete"))
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    injected: &AtomicU64,
) -> std::io::Result<()> {
    // one request per connection: the head is read here, and `Connection: close` makes the
    // client open a new connection (and so pass through here) for the next one
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let content_length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if let Fault::HoldUploads(part) = fault
        && method == "PUT"
        && target.contains(part)
    {
        injected.fetch_add(1, Ordering::SeqCst);
        let mut sink = [0u8; 65536];
        while client.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let answer = match fault {
        Fault::SlowDownUntil(t) if Instant::now() < t && is_data_upload(&method, &target) => {
            Some((503, "Service Unavailable", "SlowDown", "injected 503"))
        }
        Fault::DenyDelete if is_delete(&method, &target) => {
            Some((403, "Forbidden", "AccessDenied", "Access Denied (injected)"))
        }
        _ => None,
    };
    if let Some((status, reason, code, message)) = answer {
        injected.fetch_add(1, Ordering::SeqCst);
        // read the body first, so the client sees the answer rather than a reset
        let mut have = buf.len() - head_end;
        while have < content_length {
            let mut chunk = [0u8; 65536];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            have += n;
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>{target}</Resource></Error>"
        );
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(resp.as_bytes()).await?;
        client.shutdown().await?;
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream).await?;
    let has_connection = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("connection:"));
    if has_connection {
        server.write_all(&buf[..head_end]).await?;
    } else {
        server.write_all(&buf[..head_end - 2]).await?;
        server.write_all(b"Connection: close\r\n\r\n").await?;
    }
    server.write_all(&buf[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
