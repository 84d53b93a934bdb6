//! Container logs as the kubelet serves them: the CRI log files (one line per write,
//! `<RFC 3339 time> <stdout|stderr> <P|F> <text>`, P marking a partial line continued by the
//! next) parsed back into lines, with the `tailLines`, `sinceSeconds`/`sinceTime`,
//! `timestamps` and `limitBytes` options, and `follow`.

use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;

/// One log line, partial writes joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written (the time of its first part), as in the file.
    pub time: String,
    /// Parsed `time`.
    pub at: Option<Timestamp>,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text with its newline (none when the file ends inside a partial line).
    pub text: Vec<u8>,
}

/// Incremental parser of a CRI log file: feed it bytes, take whole lines.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    partial: Option<LogLine>,
}

impl Parser {
    /// Feeds bytes read from the file; returns the lines they complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<LogLine> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let record: Vec<u8> = self.buf.drain(..=nl).collect();
            if let Some(line) = self.record(&record[..record.len() - 1]) {
                out.push(line);
            }
        }
        out
    }

    /// One record (without its newline); a line when it completes one.
    fn record(&mut self, record: &[u8]) -> Option<LogLine> {
        let mut fields = record.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(fields.next()?).ok()?.to_string();
        let stream = std::str::from_utf8(fields.next()?).ok()?.to_string();
        let tag = fields.next()?;
        let text = fields.next().unwrap_or_default();
        let full = !tag.split(|b| *b == b':').any(|t| t == b"P");
        let line = match self.partial.take() {
            Some(mut p) if p.stream == stream => {
                p.text.extend_from_slice(text);
                p
            }
            _ => LogLine { at: time.parse().ok(), time, stream, text: text.to_vec() },
        };
        if full {
            let mut line = line;
            line.text.push(b'\n');
            Some(line)
        } else {
            self.partial = Some(line);
            None
        }
    }
}

/// Options of a logs request (the kubelet's `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming while the container runs.
    pub follow: bool,
    /// The previous (terminated) instance of the container.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// A malformed logs option.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value:?} for {name}")]
pub struct OptionError {
    /// The parameter.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl LogOptions {
    /// Parses the query parameters; `now` resolves `sinceSeconds`.
    pub fn parse(query: &[(String, String)], now: Timestamp) -> Result<LogOptions, OptionError> {
        let mut o = LogOptions::default();
        for (k, v) in query {
            let bad = || OptionError { name: k.clone(), value: v.clone() };
            let flag = || match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" | "" => Ok(false),
                _ => Err(bad()),
            };
            match k.as_str() {
                "follow" => o.follow = flag()?,
                "previous" => o.previous = flag()?,
                "timestamps" => o.timestamps = flag()?,
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| bad())?;
                    o.tail_lines = (n >= 0).then_some(n as usize);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| bad())?;
                    if n <= 0 {
                        return Err(bad());
                    }
                    o.limit_bytes = Some(n as usize);
                }
                "sinceSeconds" => {
                    let n: i64 = v.parse().map_err(|_| bad())?;
                    if n <= 0 {
                        return Err(bad());
                    }
                    o.since = Some(now - k8s_openapi::jiff::SignedDuration::from_secs(n));
                }
                "sinceTime" => o.since = Some(v.parse().map_err(|_| bad())?),
                _ => {}
            }
        }
        Ok(o)
    }

    /// Whether `line` passes the `since` filter.
    pub fn keeps(&self, line: &LogLine) -> bool {
        match (self.since, line.at) {
            (Some(since), Some(at)) => at >= since,
            _ => true,
        }
    }

    /// The bytes sent for `line`.
    pub fn render(&self, line: &LogLine) -> Vec<u8> {
        if self.timestamps {
            let mut out = Vec::with_capacity(line.time.len() + 1 + line.text.len());
            out.extend_from_slice(line.time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&line.text);
            out
        } else {
            line.text.clone()
        }
    }
}

/// The log files of one container in its pod's log directory, oldest attempt first
/// (`<dir>/<container>/<attempt>.log`).
pub fn attempts(pod_log_dir: &Path, container: &str) -> Vec<(u32, PathBuf)> {
    let dir = pod_log_dir.join(container);
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// The lines of the existing content of a log file that `options` select (since, tail).
pub fn select(content: &[u8], options: &LogOptions) -> Vec<LogLine> {
    let mut parser = Parser::default();
    let mut lines: Vec<LogLine> = parser.feed(content).into_iter().filter(|l| options.keeps(l)).collect();
    if let Some(n) = options.tail_lines
        && lines.len() > n
    {
        lines.drain(..lines.len() - n);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[LogLine]) -> String {
        lines.iter().map(|l| String::from_utf8_lossy(&l.text).into_owned()).collect()
    }

    #[test]
    fn partial_writes_are_joined_and_streams_kept() {
        let file = b"2024-05-01T10:00:00.000000001Z stdout P hel\n\
2024-05-01T10:00:00.000000002Z stdout F lo\n\
2024-05-01T10:00:01.5Z stderr F oops with  spaces\n\
2024-05-01T10:00:02Z stdout F \n";
        let mut p = Parser::default();
        let lines = p.feed(file);
        assert_eq!(text(&lines), "hello\noops with  spaces\n\n");
        assert_eq!(lines[0].time, "2024-05-01T10:00:00.000000001Z");
        assert_eq!(lines[1].stream, "stderr");
        assert!(lines[2].at.is_some());
    }

    #[test]
    fn records_split_across_reads_wait_for_their_newline() {
        let mut p = Parser::default();
        assert!(p.feed(b"2024-05-01T10:00:00Z stdout F one\n2024-05-01T10:00:01Z std").len() == 1);
        assert!(p.feed(b"out P tw").is_empty());
        assert!(p.feed(b"o\n").is_empty());
        let lines = p.feed(b"2024-05-01T10:00:02Z stdout F !\n");
        assert_eq!(text(&lines), "two!\n");
        // Garbage records are skipped, not fatal.
        assert!(p.feed(b"garbage\n").is_empty());
    }

    #[test]
    fn options_tail_since_timestamps_and_bad_values() {
        let now: Timestamp = "2024-05-01T10:00:10Z".parse().unwrap();
        let file =
            b"2024-05-01T10:00:00Z stdout F a\n2024-05-01T10:00:05Z stdout F b\n2024-05-01T10:00:09Z stdout F c\n";
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let o = LogOptions::parse(&q(&[("tailLines", "2")]), now).unwrap();
        assert_eq!(text(&select(file, &o)), "b\nc\n");
        let o = LogOptions::parse(&q(&[("tailLines", "0")]), now).unwrap();
        assert!(select(file, &o).is_empty());
        let o = LogOptions::parse(&q(&[("sinceSeconds", "6")]), now).unwrap();
        assert_eq!(text(&select(file, &o)), "b\nc\n");
        let o = LogOptions::parse(&q(&[("sinceTime", "2024-05-01T10:00:06Z")]), now).unwrap();
        assert_eq!(text(&select(file, &o)), "c\n");
        let o = LogOptions::parse(&q(&[("timestamps", "true"), ("tailLines", "1")]), now).unwrap();
        let lines = select(file, &o);
        assert_eq!(o.render(&lines[0]), b"2024-05-01T10:00:09Z c\n");
        for bad in [
            ("tailLines", "x"),
            ("limitBytes", "0"),
            ("sinceSeconds", "-1"),
            ("sinceTime", "yesterday"),
            ("follow", "maybe"),
        ] {
            assert!(LogOptions::parse(&q(&[bad]), now).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn attempts_are_sorted_numerically() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        for n in [10, 2, 0] {
            std::fs::write(dir.path().join(format!("c/{n}.log")), "").unwrap();
        }
        std::fs::write(dir.path().join("c/other"), "").unwrap();
        let found: Vec<u32> = attempts(dir.path(), "c").into_iter().map(|(n, _)| n).collect();
        assert_eq!(found, vec![0, 2, 10]);
        assert!(attempts(dir.path(), "missing").is_empty());
    }
}
