//! `huiying train rumor`: read labelled cascades, cross-validate, write the model the rules
//! load (`rules/models/rumor.bin`) and print its early-detection curve.

use super::commands::load_rules;
use super::replay::open_input;
use crate::detect::rumor_model::train::{cascades, train, LabelledPost, TrainSettings};
use crate::detect::Analyzer;
use anyhow::Context;
use std::io::{BufRead, Write};
use std::path::Path;

/// Read `file` (labelled JSON Lines: the mention fields plus `event` and `label`), train and
/// write the model to `out`. Bad lines are reported with file:line and skipped.
pub fn train_rumor(
    file: &Path,
    rules_dir: &Path,
    out: &Path,
    settings: &TrainSettings,
    report: &mut dyn Write,
) -> anyhow::Result<()> {
    let analyzer = Analyzer::new();
    let rules = load_rules(rules_dir, &analyzer)?;
    let input = open_input(file)?;
    let mut posts = Vec::new();
    let mut bad = 0u64;
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("{}: read error", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match labelled_post(&line, &analyzer, &rules) {
            Ok(p) => posts.push(p),
            Err(e) => {
                bad += 1;
                if bad <= 20 {
                    eprintln!("{}:{}: skipped: {e}", file.display(), i + 1);
                }
            }
        }
    }
    let cs = cascades(posts);
    let rumors = cs.iter().filter(|c| c.rumor).count();
    if rumors == 0 || rumors == cs.len() {
        anyhow::bail!(
            "{}: needs both rumor and non-rumor events (found {} events, {rumors} rumors)",
            file.display(),
            cs.len()
        );
    }
    writeln!(
        report,
        "训练 / training: {} events ({rumors} rumor), {bad} lines skipped",
        cs.len()
    )?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model = train(
        &cs,
        settings,
        format!(
            "{name}: {} events ({rumors} rumor, {} non-rumor)",
            cs.len(),
            cs.len() - rumors
        ),
    );
    for p in &model.info.cv {
        writeln!(
            report,
            "交叉验证 / cross-validated, flags by post {:>3}: P {:.3}  R {:.3}  F1 {:.3}",
            p.by_post, p.precision, p.recall, p.f1
        )?;
    }
    if let Some(m) = model.info.cv_median_flag_post {
        writeln!(report, "中位标记位置 / median flag at post: {m}")?;
    }
    writeln!(
        report,
        "阈值 / threshold {:.2}, min_posts {}",
        model.threshold, model.min_posts
    )?;
    model
        .save(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    writeln!(report, "已写入 / written: {}", out.display())?;
    Ok(())
}

fn labelled_post(
    line: &str,
    analyzer: &Analyzer,
    rules: &crate::detect::RuleSet,
) -> Result<LabelledPost, String> {
    let mut v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    let event = match obj.remove("event") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        _ => return Err("field `event`: missing or not a string".into()),
    };
    let rumor = match obj.remove("label").as_ref().and_then(|l| l.as_str()) {
        Some("rumor") => true,
        Some("non-rumor") => false,
        _ => return Err("field `label`: expected \"rumor\" or \"non-rumor\"".into()),
    };
    let m = crate::normalize::mention::parse_value(&v).map_err(|e| e.to_string())?;
    let a = analyzer.analyze(rules, &m);
    let text = analyzer.normalizer.normalize(&m.text).into_owned();
    Ok(LabelledPost {
        event,
        rumor,
        ts: m.ts,
        author: m.author_key(),
        text,
        original: m.repost_of.is_none() && m.reply_to.is_none(),
        cues: a.cues,
    })
}
