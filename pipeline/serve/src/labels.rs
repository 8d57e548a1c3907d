//! The inspectors' dispositions as labels: how good the risk lists were, as the people who
//! triaged them judged (`pharmwatch evaluate dispositions`). A confirmed row is a true alarm,
//! a dismissed one a false alarm, a watched one undecided; per grade, per indicator and for
//! the rows the anomaly model flagged, the share confirmed among the decided rows (the
//! list's precision as judged) and the dismissal reasons.
//!
//! Invariant: only rows that are both on a stored risk list and disposed are counted; a row
//! without a disposition is "not yet triaged", never a negative.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use pharmwatch_core::store::{Store, sql_err};

/// Counts of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Rows on the lists.
    pub rows: usize,
    /// Confirmed.
    pub confirmed: usize,
    /// Dismissed.
    pub dismissed: usize,
    /// Watched.
    pub watch: usize,
}

impl Tally {
    /// Confirmed among the decided rows; `None` with none decided.
    pub fn precision(&self) -> Option<f64> {
        let decided = self.confirmed + self.dismissed;
        (decided > 0).then(|| self.confirmed as f64 / decided as f64)
    }

    fn add(&mut self, disposition: Option<&str>) {
        self.rows += 1;
        match disposition {
            Some("confirmed") => self.confirmed += 1,
            Some("dismissed") => self.dismissed += 1,
            Some("watch") => self.watch += 1,
            _ => {}
        }
    }
}

/// The score of the stored risk lists against the dispositions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DispositionScore {
    /// Every row.
    pub all: Tally,
    /// Per risk grade.
    pub by_grade: BTreeMap<String, Tally>,
    /// Per indicator (a row counts for each of its indicators).
    pub by_indicator: BTreeMap<String, Tally>,
    /// Rows whose enterprise-day the model flagged (it has reasons).
    pub model_flagged: Tally,
    /// Dismissal reasons and their counts.
    pub dismissal_reasons: BTreeMap<String, usize>,
}

/// Scores every stored risk-list row against its disposition.
pub fn score(store: &Store) -> Result<DispositionScore> {
    let rows = store.risk_rows(None, None)?;
    let path = store.path();
    let mut st = store
        .conn_ref()
        .prepare("SELECT list_id, enterprise_id, disposition, reason FROM dispositions")
        .map_err(|e| sql_err(path, "dispositions", e))?;
    let disposed: BTreeMap<(String, String), (String, String)> = st
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .map_err(|e| sql_err(path, "dispositions", e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| sql_err(path, "dispositions", e))?;
    let mut s = DispositionScore::default();
    for row in rows {
        let d = disposed.get(&(row.list_id.clone(), row.enterprise_id.clone()));
        let disp = d.map(|(x, _)| x.as_str());
        s.all.add(disp);
        s.by_grade.entry(row.grade.clone()).or_default().add(disp);
        for i in row
            .indicators
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            s.by_indicator.entry(i.to_string()).or_default().add(disp);
        }
        if !row.anomaly_reasons.is_empty() {
            s.model_flagged.add(disp);
        }
        if let Some((kind, reason)) = d
            && kind == "dismissed"
        {
            *s.dismissal_reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    Ok(s)
}

/// The score as a table.
pub fn report(s: &DispositionScore) -> String {
    let line = |name: &str, t: &Tally| {
        format!(
            "{name:<26} {:>6} {:>9} {:>9} {:>6} {:>10}\n",
            t.rows,
            t.confirmed,
            t.dismissed,
            t.watch,
            t.precision().map_or("-".to_string(), |p| format!("{p:.3}"))
        )
    };
    let mut out = format!(
        "risk lists against the inspectors' dispositions (confirmed = true alarm, dismissed = false alarm)\n\
         {:<26} {:>6} {:>9} {:>9} {:>6} {:>10}\n",
        "group", "rows", "confirmed", "dismissed", "watch", "precision"
    );
    out.push_str(&line("all rows", &s.all));
    for (g, t) in &s.by_grade {
        out.push_str(&line(&format!("grade {g}"), t));
    }
    for (i, t) in &s.by_indicator {
        out.push_str(&line(i, t));
    }
    out.push_str(&line("flagged by the model", &s.model_flagged));
    if s.all.confirmed + s.all.dismissed == 0 {
        out.push_str("no row has been confirmed or dismissed yet\n");
    }
    if !s.dismissal_reasons.is_empty() {
        out.push_str("dismissal reasons:\n");
        for (r, n) in &s.dismissal_reasons {
            out.push_str(&format!("  {n:>4}  {r}\n"));
        }
    }
    out
}
