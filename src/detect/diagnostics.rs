//! Rules-file diagnostics: where in a file a problem is (byte offset → 1-based line), the
//! collector of `file:line: message` problems, and reading one or a directory of TOML files
//! with parse errors reported at their line.
//!
//! Every loader of a human-written TOML file (rules, matrix, templates, and the load-test
//! scenarios in `loadtest/`) counts lines here, so a message points at the same line everywhere.

use super::rules::{RuleError, RuleErrors};
use std::path::{Path, PathBuf};

/// 1-based line of byte `offset` in `src` (an offset past the end is the last line).
pub fn line_at(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Line starts of one file, for the thousands of look-ups in a large file (regions.toml),
/// where counting from the start each time would be quadratic.
pub(crate) struct LineIndex {
    newlines: Vec<usize>,
    len: usize,
}

impl LineIndex {
    /// Index the newlines of `src`.
    pub(crate) fn new(src: &str) -> Self {
        LineIndex {
            newlines: src
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
            len: src.len(),
        }
    }

    /// 1-based line of byte `offset` (same answer as [`line_at`]).
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.newlines
            .partition_point(|nl| *nl < offset.min(self.len))
            + 1
    }
}

/// A pattern (keyword, cue…) as the automaton matches it: normalised, or why it cannot be one
/// (empty, or a single Chinese character: too noisy to match).
pub(crate) fn normalized_pattern(
    normalizer: &crate::normalize::Normalizer,
    raw: &str,
) -> Result<String, String> {
    let norm = normalizer.normalize(raw.trim()).into_owned();
    if norm.is_empty() {
        return Err("empty pattern".into());
    }
    if norm.chars().count() == 1 && !norm.is_ascii() {
        return Err(format!(
            "pattern {raw:?} is a single character; too noisy to match"
        ));
    }
    Ok(norm)
}

/// Collects `file:line: message` problems.
pub(crate) struct Problems {
    pub(crate) errors: Vec<RuleError>,
}

impl Problems {
    /// No problems yet.
    pub(crate) fn new() -> Self {
        Problems { errors: Vec::new() }
    }

    /// Record a problem at `file:line` (line 0: the file as a whole).
    pub(crate) fn at(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// Sorted by file and line (stable, so discovery order breaks ties).
    pub(crate) fn finish(mut self) -> Result<(), RuleErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(RuleErrors(self.errors))
    }
}

/// Read and parse one TOML file; the text is returned too, for locating later problems.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<(String, T), RuleError> {
    let problem = |line: usize, message: String| RuleError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let src = std::fs::read_to_string(path).map_err(|e| problem(0, format!("cannot read: {e}")))?;
    match toml::from_str::<T>(&src) {
        Ok(v) => Ok((src, v)),
        Err(e) => {
            let line = e.span().map(|s| line_at(&src, s.start)).unwrap_or(0);
            Err(problem(line, e.message().trim().to_string()))
        }
    }
}

/// Read and parse every `*.toml` of `dir` (sorted by name). Problems go to `p`.
pub(crate) fn read_dir_toml<T: serde::de::DeserializeOwned>(
    dir: &Path,
    p: &mut Problems,
) -> Vec<(PathBuf, String, T)> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            p.at(dir, 0, format!("cannot read directory: {e}"));
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        p.at(dir, 0, "no *.toml files");
    }
    let mut out = Vec::new();
    for path in paths {
        match read_toml::<T>(&path) {
            Ok((src, v)) => out.push((path, src, v)),
            Err(e) => p.errors.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 4), 3);
    }

    #[test]
    fn line_at_is_one_based() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }

    #[test]
    fn the_index_agrees_with_counting() {
        let src = "a\n\nbc\nd\n";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() + 2 {
            assert_eq!(index.line(offset), line_at(src, offset), "offset {offset}");
        }
    }
}
