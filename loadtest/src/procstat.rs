//! RSS and CPU time of a process from `/proc/PID` (Linux).

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`: 100 on every Linux
/// architecture we run on).
const CLK_TCK: f64 = 100.0;

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User + system CPU time since the process started, seconds.
    pub cpu_secs: f64,
}

/// Why a reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process is gone, or this is not Linux).
    #[error("/proc/{pid}/{file}: {source}")]
    Read {
        /// Process id.
        pid: u32,
        /// `stat` or `status`.
        file: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A field was missing or not a number.
    #[error("/proc/{pid}/{file}: cannot parse {field}")]
    Parse {
        /// Process id.
        pid: u32,
        /// `stat` or `status`.
        file: &'static str,
        /// The field.
        field: &'static str,
    },
}

/// Read RSS and CPU time of `pid`.
pub fn sample(pid: u32) -> Result<Sample, ProcError> {
    let read =
        |file: &'static str| {
            std::fs::read_to_string(format!("/proc/{pid}/{file}"))
                .map_err(|source| ProcError::Read { pid, file, source })
        };
    let status = read("status")?;
    let rss_kb = parse_rss_kb(&status).ok_or(ProcError::Parse {
        pid,
        file: "status",
        field: "VmRSS",
    })?;
    let stat = read("stat")?;
    let ticks = parse_cpu_ticks(&stat).ok_or(ProcError::Parse {
        pid,
        file: "stat",
        field: "utime/stime",
    })?;
    Ok(Sample {
        rss_bytes: rss_kb * 1024,
        cpu_secs: ticks as f64 / CLK_TCK,
    })
}

fn parse_rss_kb(status: &str) -> Option<u64> {
    let l = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime: fields 14 and 15, counted after the parenthesised command name (which may
/// contain spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files_and_reads_itself() {
        let stat =
            "1234 (huiying run) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_rss_kb("Name:\tx\nVmRSS:\t  5120 kB\n"), Some(5120));
        assert_eq!(parse_rss_kb("Name:\tx\n"), None);
        let me = sample(std::process::id()).expect("own /proc entry");
        assert!(me.rss_bytes > 0);
    }
}
