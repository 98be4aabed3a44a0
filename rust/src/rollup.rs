//! Per-agent rollups of a time range, merged many agents at a time.
//!
//! A [`RollupTable`] holds, for each key (an agent), what the metrics store keeps per bucket:
//! requests by status class, the in-flight and queue maxima, and the encoded latency sketch.
//! Tables of neighbouring buckets merge into the table of their union, so a range query reads a
//! few pre-merged tables instead of one row per agent and bucket, and each merge is one call
//! for the whole fleet instead of a Python loop per agent.
//!
//! Merging is exact: counts add, maxima take the maximum, sketches merge bin by bin (see
//! [`Sketch::merge_encoded_bytes`]), so any grouping of the same buckets gives the same counts
//! and quantiles (only the sketches' float sums may differ in the last bits with the order).

use crate::sketch::{Sketch, SketchError};

/// One key's rollup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollup {
    /// Requests by status class: other, 1xx, 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; 6],
    /// Largest in-flight count seen.
    pub in_flight_max: u64,
    /// Largest queue depth seen.
    pub queue_max: u64,
    /// The encoded latency sketch; empty for none.
    pub latency: Vec<u8>,
}

impl Rollup {
    fn clone_counts(&self) -> Rollup {
        Rollup {
            classes: self.classes,
            in_flight_max: self.in_flight_max,
            queue_max: self.queue_max,
            latency: Vec::new(),
        }
    }
}

/// Rollups by key, sorted by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollupTable {
    keys: Vec<String>,
    rows: Vec<Rollup>,
}

// Per row beyond its key and sketch bytes: the counters and two vector headers.
const ROW_OVERHEAD: usize = std::mem::size_of::<Rollup>() + std::mem::size_of::<String>();

impl RollupTable {
    /// The table of `rows` (rows of one key are merged).
    pub fn from_rows(rows: Vec<(String, Rollup)>) -> Result<Self, SketchError> {
        let mut refs: Vec<(&str, &Rollup)> = rows.iter().map(|(k, r)| (k.as_str(), r)).collect();
        // stable: rows of one key merge in the order given
        refs.sort_by(|a, b| a.0.cmp(b.0));
        Self::grouped(&refs)
    }

    /// One table per bucket of `(bucket, key, rollup)` rows, in bucket order.
    pub fn by_bucket(rows: Vec<(i64, String, Rollup)>) -> Result<Vec<(i64, Self)>, SketchError> {
        let mut refs: Vec<(i64, &str, &Rollup)> =
            rows.iter().map(|(b, k, r)| (*b, k.as_str(), r)).collect();
        refs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut out = Vec::new();
        for chunk in refs.chunk_by(|a, b| a.0 == b.0) {
            let group: Vec<(&str, &Rollup)> = chunk.iter().map(|(_, k, r)| (*k, *r)).collect();
            out.push((chunk[0].0, Self::grouped(&group)?));
        }
        Ok(out)
    }

    /// The union of `tables` (rows of one key merged, in table order).
    pub fn merged(tables: &[&RollupTable]) -> Result<Self, SketchError> {
        let non_empty: Vec<&&RollupTable> = tables.iter().filter(|t| !t.is_empty()).collect();
        if non_empty.len() <= 1 {
            return Ok(non_empty.first().map(|t| (**t).clone()).unwrap_or_default());
        }
        let mut refs: Vec<(&str, &Rollup)> = non_empty
            .iter()
            .flat_map(|t| t.keys.iter().map(String::as_str).zip(t.rows.iter()))
            .collect();
        refs.sort_by(|a, b| a.0.cmp(b.0));
        Self::grouped(&refs)
    }

    // `refs` sorted by key: one merged row per key.
    fn grouped(refs: &[(&str, &Rollup)]) -> Result<Self, SketchError> {
        let mut out = RollupTable::default();
        for group in refs.chunk_by(|a, b| a.0 == b.0) {
            out.keys.push(group[0].0.to_owned());
            out.rows.push(merge_rows(group.iter().map(|(_, r)| *r))?);
        }
        Ok(out)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate memory held, in bytes (for cache budgets).
    pub fn nbytes(&self) -> usize {
        self.keys
            .iter()
            .zip(&self.rows)
            .map(|(k, r)| k.len() + r.latency.len() + ROW_OVERHEAD)
            .sum()
    }

    /// (key, rollup) in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Rollup)> {
        self.keys.iter().map(String::as_str).zip(self.rows.iter())
    }
}

/// A [`RollupTable`] with its sketches decoded, to be combined with the rows still changing.
///
/// A range that is queried again and again (a dashboard's) is mostly sealed buckets: their
/// table is decoded once and kept, and each query only decodes the open buckets' small sketches
/// and merges them in, instead of decoding and re-encoding every agent's whole-range sketch.
#[derive(Clone, Debug, Default)]
pub struct DecodedTable {
    keys: Vec<String>,
    rows: Vec<(Rollup, Sketch)>,
}

/// One agent's result: key, status-class counts, in-flight max, queue max, latency sketch.
pub type RollupRow = (String, [u64; 6], u64, u64, Sketch);

impl DecodedTable {
    /// `table`, decoded.
    pub fn decode(table: &RollupTable) -> Result<Self, SketchError> {
        let mut out = DecodedTable::default();
        for (k, r) in table.iter() {
            out.keys.push(k.to_owned());
            out.rows.push((r.clone_counts(), sketch_of(&r.latency)?));
        }
        Ok(out)
    }

    /// Every key's result with the rows of `extra` merged in (the same as merging the tables).
    pub fn with(&self, extra: &[&RollupTable]) -> Result<Vec<RollupRow>, SketchError> {
        let mut more: Vec<(&str, &Rollup)> = extra.iter().flat_map(|t| t.iter()).collect();
        more.sort_by(|a, b| a.0.cmp(b.0)); // stable: table order within a key
        let mut out = Vec::with_capacity(self.keys.len() + more.len());
        let (mut i, mut j) = (0, 0);
        while i < self.keys.len() || j < more.len() {
            let key = match (self.keys.get(i), more.get(j)) {
                (Some(a), Some((b, _))) => a.as_str().min(b),
                (Some(a), None) => a.as_str(),
                (None, Some((b, _))) => b,
                (None, None) => break,
            };
            let (mut counts, mut sketch) = match self.keys.get(i) {
                Some(k) if k == key => {
                    i += 1;
                    let (r, s) = &self.rows[i - 1];
                    (r.clone_counts(), s.clone())
                }
                _ => (Rollup::default(), Sketch::new()),
            };
            while let Some((_, r)) = more.get(j).filter(|(k, _)| *k == key) {
                j += 1;
                for (o, c) in counts.classes.iter_mut().zip(r.classes) {
                    *o = o.saturating_add(c);
                }
                counts.in_flight_max = counts.in_flight_max.max(r.in_flight_max);
                counts.queue_max = counts.queue_max.max(r.queue_max);
                if !r.latency.is_empty() {
                    sketch.merge(&Sketch::from_bytes(&r.latency)?);
                }
            }
            out.push((
                key.to_owned(),
                counts.classes,
                counts.in_flight_max,
                counts.queue_max,
                sketch,
            ));
        }
        Ok(out)
    }

    /// Approximate memory held, in bytes (for cache budgets).
    pub fn nbytes(&self) -> usize {
        let sketches: usize = self.rows.iter().map(|(_, s)| s.nbytes()).sum();
        sketches
            + self
                .keys
                .iter()
                .map(|k| k.len() + ROW_OVERHEAD)
                .sum::<usize>()
    }
}

fn sketch_of(bytes: &[u8]) -> Result<Sketch, SketchError> {
    if bytes.is_empty() {
        Ok(Sketch::new())
    } else {
        Sketch::from_bytes(bytes)
    }
}

fn merge_rows<'a>(rows: impl Iterator<Item = &'a Rollup> + Clone) -> Result<Rollup, SketchError> {
    let mut out = Rollup::default();
    let mut sketches = 0;
    let mut only: &[u8] = &[];
    for r in rows.clone() {
        for (o, c) in out.classes.iter_mut().zip(r.classes) {
            *o = o.saturating_add(c);
        }
        out.in_flight_max = out.in_flight_max.max(r.in_flight_max);
        out.queue_max = out.queue_max.max(r.queue_max);
        if !r.latency.is_empty() {
            sketches += 1;
            only = &r.latency;
        }
    }
    out.latency = match sketches {
        0 => Vec::new(),
        // one sketch: its bytes are already what a merge would write
        1 => only.to_vec(),
        _ => Sketch::merge_encoded_bytes(
            rows.filter(|r| !r.latency.is_empty())
                .map(|r| r.latency.as_slice()),
        )?,
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u64, lat: &[f64]) -> Rollup {
        let mut s = Sketch::new();
        for v in lat {
            s.add(*v, 1);
        }
        Rollup {
            classes: [0, 0, n, 0, 0, 1],
            in_flight_max: n % 7,
            queue_max: n % 3,
            latency: if lat.is_empty() {
                Vec::new()
            } else {
                s.to_bytes()
            },
        }
    }

    #[test]
    fn merges_by_key_exactly() {
        let a = RollupTable::from_rows(vec![
            ("b".into(), row(5, &[0.1, 0.2])),
            ("a".into(), row(3, &[0.3])),
            ("b".into(), row(2, &[])),
        ])
        .unwrap();
        assert_eq!(a.len(), 2);
        let b = RollupTable::from_rows(vec![
            ("c".into(), row(1, &[1.0])),
            ("a".into(), row(9, &[0.5, 0.7])),
        ])
        .unwrap();
        let m = RollupTable::merged(&[&a, &RollupTable::default(), &b]).unwrap();
        let got: Vec<(&str, &Rollup)> = m.iter().collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), ["a", "b", "c"]);
        let (_, ra) = got[0];
        assert_eq!(ra.classes, [0, 0, 12, 0, 0, 2]);
        assert_eq!(ra.in_flight_max, 3);
        let s = Sketch::from_bytes(&ra.latency).unwrap();
        assert_eq!(s.count(), 3);
        let direct = Sketch::merge_decoded([
            row(3, &[0.3]).latency.as_slice(),
            row(9, &[0.5, 0.7]).latency.as_slice(),
        ])
        .unwrap();
        assert_eq!(s.quantile(0.5), direct.quantile(0.5));
        assert_eq!(got[1].1.classes[2], 7);
        assert!(m.nbytes() > 0);
    }

    #[test]
    fn groups_rows_by_bucket() {
        let t = RollupTable::by_bucket(vec![
            (20, "x".into(), row(1, &[0.1])),
            (10, "y".into(), row(2, &[0.2])),
            (20, "x".into(), row(4, &[0.4])),
        ])
        .unwrap();
        assert_eq!(t.iter().map(|(b, _)| *b).collect::<Vec<_>>(), [10, 20]);
        let (_, x) = t[1].1.iter().next().unwrap();
        assert_eq!(x.classes[2], 5);
        assert_eq!(Sketch::from_bytes(&x.latency).unwrap().count(), 2);
    }

    #[test]
    fn a_decoded_table_with_extra_rows_equals_the_merge() {
        let base = RollupTable::from_rows(vec![
            ("a".into(), row(3, &[0.3, 0.1])),
            ("c".into(), row(4, &[])),
            ("d".into(), row(5, &[2.0])),
        ])
        .unwrap();
        let extra = RollupTable::from_rows(vec![
            ("b".into(), row(1, &[0.01])),
            ("c".into(), row(2, &[0.4])),
            ("d".into(), row(6, &[])),
            ("e".into(), row(7, &[0.5])),
        ])
        .unwrap();
        let merged = RollupTable::merged(&[&base, &extra]).unwrap();
        let got = DecodedTable::decode(&base)
            .unwrap()
            .with(&[&extra])
            .unwrap();
        assert_eq!(got.len(), merged.len());
        for ((k, classes, inf, q, s), (mk, mr)) in got.iter().zip(merged.iter()) {
            assert_eq!(
                (k.as_str(), *classes, *inf, *q),
                (mk, mr.classes, mr.in_flight_max, mr.queue_max)
            );
            let want = if mr.latency.is_empty() {
                Sketch::new()
            } else {
                Sketch::from_bytes(&mr.latency).unwrap()
            };
            assert_eq!(s.to_bytes(), want.to_bytes(), "{k}");
        }
        assert!(DecodedTable::decode(&base).unwrap().nbytes() > 0);
    }

    #[test]
    fn a_bad_sketch_is_an_error() {
        let mut bad = row(1, &[0.1]);
        bad.latency.truncate(10);
        let r = RollupTable::from_rows(vec![("a".into(), bad), ("a".into(), row(1, &[0.2]))]);
        assert!(r.is_err());
    }
}
