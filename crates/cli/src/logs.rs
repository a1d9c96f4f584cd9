//! Log output of `sshttp serve` and `sshttp proxy`: tracing's text lines, or one JSON
//! object per event for log shippers (`--log-format json`, `log_format = "json"`).
//!
//! Our own formatter rather than tracing-subscriber's `json()`, which nests the event's
//! fields under `fields` and names the time `timestamp`: log shippers are configured
//! against the flat, fixed field names the README documents (`time`, `level`,
//! `target`, then the event's fields, such as the access line's `vhost`, `client`,
//! `user`, `fingerprint`, `method`, `path`, `query`, `status`, …).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per line: `time` (RFC 3339, UTC), `level`, `target`, and every
/// field of the event (the message as `message`).
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut object = Map::new();
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        object.insert("time".to_owned(), Value::String(time));
        let metadata = event.metadata();
        object.insert(
            "level".to_owned(),
            Value::String(metadata.level().as_str().to_owned()),
        );
        object.insert(
            "target".to_owned(),
            Value::String(metadata.target().to_owned()),
        );
        event.record(&mut Fields(&mut object));
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// Records an event's fields into a JSON object, numbers as numbers.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.0.insert(field.name().to_owned(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here too, as their Display text.
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}
