//! `acks.jsonl`: every write the platform acknowledged, one JSON line each, appended as the
//! workers' per-second reports arrive (a worker buffers its records for the second; nothing
//! crosses threads per request) and read back as a stream (nothing grows with the run).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::metrics::ack::Ack;

/// The file, in the run directory.
pub(crate) const ACKS_FILE: &str = "acks.jsonl";

/// One line of acks.jsonl, read back.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AckLine {
    pub kind: String,
    pub step: usize,
    pub at_ms: u64,
    pub id: Value,
    #[serde(default)]
    pub fields: Map<String, Value>,
}

/// The writer: appends each report's records and counts them per kind.
pub(crate) struct AckLog {
    out: BufWriter<File>,
    /// Each kind's name as a JSON string, written into every line.
    kinds: Vec<String>,
    counts: Vec<u64>,
}

impl AckLog {
    pub(crate) fn create(run_dir: &Path, kinds: &[String]) -> std::io::Result<AckLog> {
        let path = run_dir.join(ACKS_FILE);
        Ok(AckLog {
            out: BufWriter::new(File::create(path)?),
            kinds: kinds
                .iter()
                .map(|k| serde_json::to_string(k).expect("a string serializes"))
                .collect(),
            counts: vec![0; kinds.len()],
        })
    }

    pub(crate) fn append(&mut self, acks: &[Ack]) -> std::io::Result<()> {
        for ack in acks {
            let kind = &self.kinds[ack.kind as usize];
            write!(
                self.out,
                "{{\"kind\":{kind},\"step\":{},\"at_ms\":{},",
                ack.step, ack.at_ms
            )?;
            // The body is a JSON object: its members follow the ones above.
            self.out.write_all(&ack.body[1..])?;
            self.out.write_all(b"\n")?;
            self.counts[ack.kind as usize] += 1;
        }
        // One write per worker report (a second's records): what was acknowledged is on
        // disk for `loadgen report` even if the run is killed.
        if !acks.is_empty() {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Flushes and syncs the file; returns the records per kind.
    pub(crate) fn finish(mut self) -> std::io::Result<Vec<u64>> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(self.counts)
    }
}

/// A JSON-lines file of the run directory, read one line at a time. A last line without
/// its newline is a write the run did not finish (a crash) and ends the file; any other
/// line that does not parse is an error naming the file and line.
pub(crate) struct JsonLines {
    reader: BufReader<File>,
    path: PathBuf,
    number: usize,
    line: String,
}

impl JsonLines {
    pub(crate) fn open(path: &Path) -> Result<JsonLines, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(JsonLines {
            reader: BufReader::new(file),
            path: path.to_path_buf(),
            number: 0,
            line: String::new(),
        })
    }

    pub(crate) fn read<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, String> {
        self.line.clear();
        let read = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.number += 1;
        if read == 0 || !self.line.ends_with('\n') {
            return Ok(None);
        }
        serde_json::from_str(&self.line)
            .map(Some)
            .map_err(|e| format!("{}:{}: {e}", self.path.display(), self.number))
    }
}

/// Streams every line of a JSON-lines file to `each` (see `JsonLines`).
pub(crate) fn for_each_line<T: for<'de> Deserialize<'de>>(
    path: &Path,
    mut each: impl FnMut(T) -> Result<(), String>,
) -> Result<(), String> {
    let mut lines = JsonLines::open(path)?;
    while let Some(parsed) = lines.read()? {
        each(parsed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log =
            AckLog::create(dir.path(), &["enrol\"ment".into(), "payment".into()]).unwrap();
        log.append(&[
            Ack {
                kind: 0,
                step: 3,
                at_ms: 1_250,
                body: br#"{"fields":{"course":7},"id":41}"#.to_vec(),
            },
            Ack {
                kind: 1,
                step: 9,
                at_ms: 2_000,
                body: br#"{"fields":{},"id":"p-1"}"#.to_vec(),
            },
        ])
        .unwrap();
        let path = dir.path().join(ACKS_FILE);
        assert_eq!(log.finish().unwrap(), vec![1, 1]);
        // A crash in the middle of a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"kind":"payment","st"#)
            .unwrap();
        let mut lines = Vec::new();
        for_each_line::<AckLine>(&path, |line| {
            lines.push(line);
            Ok(())
        })
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].kind, "enrol\"ment");
        assert_eq!((lines[0].step, lines[0].at_ms), (3, 1_250));
        assert_eq!(lines[0].id, Value::from(41));
        assert_eq!(lines[0].fields["course"], Value::from(7));
        assert_eq!(lines[1].id, Value::from("p-1"));
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACKS_FILE);
        std::fs::write(
            &path,
            "{\"kind\":\"a\",\"step\":0,\"at_ms\":0,\"id\":1}\nnot json\n",
        )
        .unwrap();
        let error = for_each_line::<AckLine>(&path, |_| Ok(())).unwrap_err();
        assert!(error.contains("acks.jsonl:2"), "{error}");
    }
}
