//! Prometheus metrics, kept in a few maps and rendered as text on `GET /metrics`: request counts
//! and latencies by route and status, queue depth and busy workers, per-stage durations.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; LATENCY_BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in LATENCY_BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The method as a label: one of the methods the API knows, or `other`. Whatever a client
/// sends as a method must not become a new series (300 random methods grew /metrics 90-fold).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    latency: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    stages: Mutex<BTreeMap<&'static str, Histogram>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// One finished request. `route` is the route template that matched (a closed set: the
    /// router's), or None for no route; `method` is labelled by [`method_label`].
    pub fn request(
        &self,
        method: &axum::http::Method,
        route: Option<&str>,
        status: u16,
        seconds: f64,
    ) {
        let method = method_label(method);
        let route = route.unwrap_or("unmatched");
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method, route.into(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method, route.into()))
            .or_insert_with(Histogram::new)
            .observe(seconds);
    }

    pub fn stage(&self, stage: &'static str, seconds: f64) {
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stage)
            .or_insert_with(Histogram::new)
            .observe(seconds);
    }

    /// A request head refused before routing (too large, malformed, too slow), by code.
    pub fn refused(&self, code: super::error::Code) {
        *self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code.as_str())
            .or_default() += 1;
    }

    /// A piece of whisper's output the guards removed, by reason. The label is one of the
    /// guards' reasons (a closed set), else `other`.
    pub fn dropped(&self, reason: &str) {
        const REASONS: &[&str] = &[
            "known_hallucination",
            "prompt_echo",
            "no_speech",
            "sparse_with_prompt",
            "sparser_without_prompt",
            "repeated",
        ];
        let label = REASONS
            .iter()
            .find(|r| **r == reason)
            .copied()
            .unwrap_or("other");
        *self
            .dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label)
            .or_default() += 1;
    }

    /// The Prometheus text exposition, with the gauges the caller passes in.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        counters(
            &mut out,
            "needtag_http_requests_total",
            "HTTP requests by method, route and status.",
            &self.requests,
            |(m, r, s)| format!("method=\"{m}\",route=\"{r}\",status=\"{s}\""),
        );
        counters(
            &mut out,
            "needtag_http_refused_total",
            "Request heads refused before routing (headers_too_large, invalid_request, request_timeout), by code.",
            &self.refused,
            |c| format!("code=\"{c}\""),
        );
        histograms(
            &mut out,
            "needtag_http_request_duration_seconds",
            "Request latency by method and route.",
            &self.latency,
            |(m, r)| format!("method=\"{m}\",route=\"{r}\""),
        );
        histograms(
            &mut out,
            "needtag_stage_duration_seconds",
            "Time per pipeline stage (decode, vad, asr, tag).",
            &self.stages,
            |s| format!("stage=\"{s}\""),
        );
        counters(
            &mut out,
            "needtag_transcript_dropped_total",
            "Whisper output the guards removed, by reason (sparse_with_prompt: a prompted decode that skipped speech, replaced by one without the prompt).",
            &self.dropped,
            |r| format!("reason=\"{r}\""),
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// One counter family: its HELP and TYPE lines, then a line per label set.
fn counters<K>(
    out: &mut String,
    name: &str,
    help: &str,
    values: &Mutex<BTreeMap<K, u64>>,
    labels: impl Fn(&K) -> String,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (k, n) in values.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "{name}{{{}}} {n}", labels(k));
    }
}

/// One histogram family: its HELP and TYPE lines, then the buckets of each label set.
fn histograms<K>(
    out: &mut String,
    name: &str,
    help: &str,
    values: &Mutex<BTreeMap<K, Histogram>>,
    labels: impl Fn(&K) -> String,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (k, h) in values.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        h.render(out, name, &labels(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.request(&axum::http::Method::POST, Some("/v1/tag"), 200, 0.004);
        m.request(&axum::http::Method::POST, Some("/v1/tag"), 200, 0.02);
        m.stage("asr", 1.5);
        m.dropped("sparse_with_prompt");
        m.dropped("sparse_with_prompt");
        let text = m.render(&[("needtag_queue_depth", "Jobs waiting.", 3.0)]);
        assert!(text.contains("needtag_transcript_dropped_total{reason=\"sparse_with_prompt\"} 2"));
        assert!(text.contains(
            "needtag_http_requests_total{method=\"POST\",route=\"/v1/tag\",status=\"200\"} 2"
        ));
        assert!(text.contains("needtag_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/tag\",le=\"0.005\"} 1"));
        assert!(text.contains("needtag_stage_duration_seconds_count{stage=\"asr\"} 1"));
        assert!(text.contains("needtag_queue_depth 3"));
    }

    #[test]
    fn labels_come_from_a_closed_set() {
        let m = Metrics::default();
        for i in 0..300 {
            let method = axum::http::Method::from_bytes(format!("X{i:039}").as_bytes()).unwrap();
            m.request(&method, None, 405, 0.001);
        }
        let text = m.render(&[]);
        assert!(text.contains(
            "needtag_http_requests_total{method=\"other\",route=\"unmatched\",status=\"405\"} 300"
        ));
        assert_eq!(
            text.matches("method=\"other\"").count(),
            1 + LATENCY_BUCKETS.len() + 3,
            "one counter, one histogram"
        );
    }
}
