//! Reading a service's metrics in a test, straight from its registry.

use prometheus::proto::MetricType;
use vigil_topology::Telemetry;

/// Returns the value of metric `name` over every series whose labels include `labels`, summed
/// (a histogram counts its observations); 0 when no series matches.
pub fn metric(telemetry: &Telemetry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for family in telemetry.registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if !matches {
                continue;
            }
            total += match family.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
                _ => 0.0,
            };
        }
    }
    total
}
