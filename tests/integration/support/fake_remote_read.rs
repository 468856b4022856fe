//! A fault-injecting remote read server (HTTP/1.1 on a raw socket, so every byte of the answer
//! is the script's): chunks, samples as Cortex answers, and what no real server does on
//! demand: an unknown encoding, a CRC mismatch, a cut frame, an error appended to a 200 body.

use prost::Message;
use storeapi_exporter::chunk::encode;
use storeapi_exporter::remote_read::frames::encode_frame;
use storeapi_exporter::remote_read::proto as rr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// Streamed XOR chunks, each series split over two frames as Prometheus splits long ones.
    Chunks,
    /// A snappy `ReadResponse` of samples, whatever was asked (Cortex).
    Samples,
    /// Every series' chunk has encoding XOR2 (4).
    Xor2,
    /// Requests starting at or after this time (ms) get a frame whose CRC does not match.
    CrcFrom(i64),
    /// Requests starting at or after this time (ms) get their last frame cut in the middle.
    CutFrom(i64),
    /// Requests starting at or after this time (ms) get one frame, then an error as text.
    ErrorFrom(i64),
    /// Every request is answered with this HTTP status.
    Status(u16),
}

fn labels(name: &str) -> Vec<rr::Label> {
    [
        ("__name__", name),
        ("cluster", "fake"),
        ("container", "app"),
        ("namespace", "ns"),
        ("node", "n1"),
        ("pod", "p1"),
        ("resource", "cpu"),
        ("unit", "core"),
    ]
    .iter()
    .map(|(n, v)| rr::Label {
        name: n.to_string(),
        value: v.to_string(),
    })
    .collect()
}

/// One sample every 30 s over the range.
fn samples(min: i64, max: i64) -> Vec<(i64, f64)> {
    let first = min - min.rem_euclid(30_000) + 30_000;
    (0..)
        .map(|i| (first + i * 30_000, 1.0 + i as f64))
        .take_while(|s| s.0 <= max)
        .collect()
}

/// The series split over two frames (two chunks), as Prometheus sends a long series.
fn frames(name: &str, min: i64, max: i64, encoding: rr::chunk::Encoding) -> Vec<Vec<u8>> {
    let s = samples(min, max);
    if s.is_empty() || name.is_empty() {
        return Vec::new();
    }
    let half = s.len().div_ceil(2);
    s.chunks(half)
        .map(|part| {
            rr::ChunkedReadResponse {
                chunked_series: vec![rr::ChunkedSeries {
                    labels: labels(name),
                    chunks: vec![rr::Chunk {
                        min_time_ms: part[0].0,
                        max_time_ms: part[part.len() - 1].0,
                        r#type: encoding as i32,
                        data: encode(part).into(),
                    }],
                }],
                query_index: 0,
            }
            .encode_to_vec()
        })
        .collect()
}

/// The status line, headers and body answering one request.
fn answer(script: Script, req: &rr::ReadRequest) -> (String, Vec<u8>) {
    const STREAMED: &str =
        "Content-Type: application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse\r\n";
    let q = &req.queries[0];
    let name = q
        .matchers
        .iter()
        .find(|m| m.name == "__name__")
        .map(|m| m.value.clone())
        .unwrap_or_default();
    let (min, max) = (q.start_timestamp_ms, q.end_timestamp_ms);
    let framed =
        |frames: Vec<Vec<u8>>| -> Vec<u8> { frames.iter().flat_map(|f| encode_frame(f)).collect() };
    let good = || framed(frames(&name, min, max, rr::chunk::Encoding::Xor));
    let ok = |body| (format!("HTTP/1.1 200 OK\r\n{STREAMED}"), body);
    // the exporter's preflight selects a metric no server has: the faults are for the windows
    if name == "storeapi_exporter_preflight" && !matches!(script, Script::Status(_)) {
        return ok(Vec::new());
    }
    match script {
        Script::Chunks => ok(good()),
        Script::Samples => {
            let resp = rr::ReadResponse {
                results: vec![rr::QueryResult {
                    timeseries: if name.is_empty() {
                        Vec::new()
                    } else {
                        vec![rr::TimeSeries {
                            labels: labels(&name),
                            samples: samples(min, max)
                                .into_iter()
                                .map(|(t, v)| rr::Sample {
                                    timestamp: t,
                                    value: v,
                                })
                                .collect(),
                            histograms: Vec::new(),
                        }]
                    },
                }],
            };
            let body = snap::raw::Encoder::new()
                .compress_vec(&resp.encode_to_vec())
                .unwrap();
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                    .to_string(),
                body,
            )
        }
        Script::Xor2 => ok(framed(frames(&name, min, max, rr::chunk::Encoding::Xor2))),
        Script::CrcFrom(t) if min >= t => {
            let mut body = good();
            if let Some(b) = body.last_mut() {
                *b ^= 0x01;
            }
            ok(body)
        }
        Script::CutFrom(t) if min >= t => {
            let mut body = good();
            body.truncate(body.len().saturating_sub(7));
            ok(body)
        }
        Script::ErrorFrom(t) if min >= t => {
            let mut f = frames(&name, min, max, rr::chunk::Encoding::Xor);
            f.truncate(1);
            let mut body = framed(f);
            body.extend(b"expanding series: iterator failed (injected)\n");
            ok(body)
        }
        Script::CrcFrom(_) | Script::CutFrom(_) | Script::ErrorFrom(_) => ok(good()),
        Script::Status(code) => (
            format!("HTTP/1.1 {code} Injected\r\nContent-Type: text/plain\r\n"),
            format!("injected status {code}\n").into_bytes(),
        ),
    }
}

async fn serve(script: Script, mut conn: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut piece).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&piece[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut piece).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&piece[..n]);
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&buf[head_end..head_end + len])
        .expect("the request is snappy-compressed");
    let req = rr::ReadRequest::decode(&raw[..]).expect("the request is a ReadRequest");
    assert_eq!(
        req.accepted_response_types,
        [rr::read_request::ResponseType::StreamedXorChunks as i32]
    );
    let (head, body) = answer(script, &req);
    conn.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await?;
    conn.write_all(&body).await?;
    conn.shutdown().await
}

/// Serves `script` on an ephemeral loopback port; returns its read URL.
pub async fn start(script: Script) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(script, conn));
        }
    });
    format!("http://{addr}/api/v1/read")
}
