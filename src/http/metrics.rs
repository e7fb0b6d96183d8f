//! Request metrics in the Prometheus text format, kept by hand: a few
//! counters and one histogram need no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Labels of one series: method, route template, status.
type Series = (String, String, u16);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, Histogram>>,
    in_flight: AtomicI64,
    rate_limited: AtomicU64,
    shed: AtomicU64,
}

impl Metrics {
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        h.count += 1;
        h.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            h.counts[i] += 1;
        }
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self, store: &[(&'static str, &'static str, f64)]) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());

        out.push_str("# HELP rekisteri_http_requests_total Requests answered.\n");
        out.push_str("# TYPE rekisteri_http_requests_total counter\n");
        for ((method, route, status), h) in requests.iter() {
            let _ = writeln!(
                out,
                "rekisteri_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                h.count
            );
        }

        out.push_str("# HELP rekisteri_http_request_duration_seconds Time to answer.\n");
        out.push_str("# TYPE rekisteri_http_request_duration_seconds histogram\n");
        for ((method, route, status), h) in requests.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "rekisteri_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "rekisteri_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "rekisteri_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "rekisteri_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        drop(requests);

        let gauges = [
            (
                "rekisteri_http_requests_in_flight",
                "gauge",
                "Requests being answered now.",
                self.in_flight.load(Ordering::Relaxed) as f64,
            ),
            (
                "rekisteri_rate_limited_total",
                "counter",
                "Requests refused by a key's rate limit.",
                self.rate_limited.load(Ordering::Relaxed) as f64,
            ),
            (
                "rekisteri_load_shed_total",
                "counter",
                "Requests refused because too many were in flight.",
                self.shed.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        for (name, help, value) in store {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
