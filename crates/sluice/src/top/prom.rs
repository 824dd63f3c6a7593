//! A small reader of the Prometheus text exposition format: what `sluice
//! top` needs from `/metrics`, and no more.
//!
//! Why our own: the services' exporter writes plain samples (`name{labels}
//! value`), and the view sums counters, reads gauges and histogram buckets;
//! a full client library would bring an HTTP stack and a data model for
//! that. Lines that do not parse are skipped (and counted), never fatal: a
//! view must keep showing what it can.

/// One sample: a metric name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of a scrape, and how many lines could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    pub skipped: usize,
}

impl Scrape {
    /// Samples named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sum of every sample named `name`; `None` when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.named(name).map(|s| s.value).reduce(|a, b| a + b)
    }

    /// The sum of the samples named `name` that `keep` accepts; `None` when
    /// none is named so (a metric present with no matching label is 0).
    pub fn sum_where(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let mut found = false;
        let mut sum = 0.0;
        for sample in self.named(name) {
            found = true;
            if keep(sample) {
                sum += sample.value;
            }
        }
        found.then_some(sum)
    }
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(sample) => scrape.samples.push(sample),
            None => scrape.skipped += 1,
        }
    }
    scrape
}

/// `name[{k="v",...}] value [timestamp]`.
fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional timestamp; anything more is not a sample line.
    if fields.nth(1).is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels up to the closing `}`; returns them and what follows.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim();
        if key.is_empty() {
            return None;
        }
        let quoted = text[eq + 1..].trim_start();
        let mut chars = quoted.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        labels.push((key.to_owned(), value));
        text = quoted[end? + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_special_values() {
        let text = "# HELP x_total a counter\n# TYPE x_total counter\n\
            x_total 3\n\
            y_total{table=\"user_logins\",kind=\"a \\\"q\\\" \\\\ b\\nc\"} 1.5e3\n\
            h_bucket{le=\"+Inf\"} 7 1700000000000\n\
            g{state=\"visible\",} -2\n\
            nan_gauge NaN\n\
            \n\
            broken{le=\"1\" 3\n\
            also broken\n";
        let scrape = parse(text);
        assert_eq!(scrape.skipped, 2, "{scrape:?}");
        assert_eq!(scrape.sum("x_total"), Some(3.0));
        let y = scrape.named("y_total").next().unwrap();
        assert_eq!(y.value, 1500.0);
        assert_eq!(y.label("table"), Some("user_logins"));
        assert_eq!(y.label("kind"), Some("a \"q\" \\ b\nc"));
        assert_eq!(scrape.sum("h_bucket"), Some(7.0));
        let h = scrape.named("h_bucket").next().unwrap();
        assert_eq!(h.label("le"), Some("+Inf"));
        assert_eq!(scrape.sum("g"), Some(-2.0));
        assert!(scrape.sum("nan_gauge").unwrap().is_nan());
        assert_eq!(scrape.sum("absent"), None);
        assert_eq!(
            scrape.sum_where("y_total", |s| s.label("table") == Some("x")),
            Some(0.0)
        );
        assert_eq!(scrape.sum_where("absent", |_| true), None);
    }

    #[test]
    fn anything_goes_without_a_panic() {
        for text in [
            "{",
            "a{",
            "a{b",
            "a{b=",
            "a{b=\"",
            "a{b=\"c\"",
            "a{=\"c\"} 1",
            "a{b=\"c\"} x",
            "\u{0}",
        ] {
            let scrape = parse(text);
            assert!(scrape.samples.is_empty(), "{text:?}: {scrape:?}");
        }
    }
}
