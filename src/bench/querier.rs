//! The Querier's own figures, from its `/metrics`.

use super::BenchError;

/// The value of an unlabelled sample `name` in Prometheus' text exposition format.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix("{}"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProcessSample {
    pub(super) cpu_seconds: f64,
    pub(super) rss_bytes: u64,
}

pub(super) async fn querier_sample(
    client: &reqwest::Client,
    url: &str,
) -> Result<ProcessSample, BenchError> {
    let err = |message: String| BenchError::Metrics {
        url: url.to_string(),
        message,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(crate::observe::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    let get = |name| metric_value(&text, name).ok_or_else(|| err(format!("no {name} sample")));
    Ok(ProcessSample {
        cpu_seconds: get("process_cpu_seconds_total")?,
        rss_bytes: get("process_resident_memory_bytes")? as u64,
    })
}
