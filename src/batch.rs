//! The batcher: groups typed records into requests.
//!
//! Owns the request-shaping rules: at most `max_rows` rows a request (1 for writes to a vectorize
//! collection; deletes still up to `max_rows`), one op and one TTL per request, never two rows with
//! the same primary key in one request, and per-key order: a row is released only after every
//! earlier row with its key has been acknowledged.
//! Never: sends, sleeps, or drops a record. Every record pushed comes out in exactly one batch.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::record::{Op, PrimaryKey, Record};

/// Identifies a batch until it is acknowledged.
pub type BatchId = u64;

/// One request's worth of records: same op, same TTL, distinct keys.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: BatchId,
    pub op: Op,
    pub ttl: Option<u32>,
    pub records: Vec<Record>,
}

/// Shapes records into batches under the rules above.
#[derive(Debug)]
pub struct Batcher {
    max_rows: usize,
    vectorize: bool,
    /// Batches still filling, one per (op, ttl), in creation order.
    open: Vec<Batch>,
    /// Batches full or flushed, waiting to be sent, in order.
    ready: VecDeque<Batch>,
    /// Keys in an open, ready or unacknowledged batch.
    busy: HashSet<PrimaryKey>,
    /// Records held back because an earlier row with the same key is not yet acknowledged: one
    /// queue per key, in read order, so an acknowledgement releases the next row in O(1).
    waiting: HashMap<PrimaryKey, VecDeque<Record>>,
    /// Records in `waiting`, all keys together.
    waiting_rows: usize,
    next_id: BatchId,
}

impl Batcher {
    pub fn new(max_rows: usize, vectorize: bool) -> Batcher {
        Batcher {
            max_rows: max_rows.clamp(1, vikingdb_types::MAX_ROWS_PER_REQUEST),
            vectorize,
            open: Vec::new(),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            waiting: HashMap::new(),
            waiting_rows: 0,
            next_id: 0,
        }
    }

    /// The most rows one request of `op` may carry.
    pub fn limit_for(&self, op: Op) -> usize {
        if self.vectorize && op != Op::Delete {
            1
        } else {
            self.max_rows
        }
    }

    /// Adds a record. It joins an open batch, or waits if its key is still busy.
    pub fn push(&mut self, rec: Record) {
        if self.busy.contains(&rec.key) {
            // The key's earlier row must be acknowledged first; make sure it is on its way.
            if let Some(i) = self
                .open
                .iter()
                .position(|b| b.records.iter().any(|r| r.key == rec.key))
            {
                let b = self.open.remove(i);
                self.ready.push_back(b);
            }
            self.waiting.entry(rec.key.clone()).or_default().push_back(rec);
            self.waiting_rows += 1;
        } else {
            self.admit(rec);
        }
    }

    fn admit(&mut self, rec: Record) {
        self.busy.insert(rec.key.clone());
        let limit = self.limit_for(rec.op);
        let i = match self.open.iter().position(|b| b.op == rec.op && b.ttl == rec.ttl) {
            Some(i) => i,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.open.push(Batch {
                    id,
                    op: rec.op,
                    ttl: rec.ttl,
                    records: Vec::with_capacity(limit),
                });
                self.open.len() - 1
            }
        };
        self.open[i].records.push(rec);
        if self.open[i].records.len() >= limit {
            let b = self.open.remove(i);
            self.ready.push_back(b);
        }
    }

    /// Moves every open batch to the ready queue (input is idle or finished).
    pub fn flush(&mut self) {
        self.ready.extend(self.open.drain(..));
    }

    /// The next batch to send.
    pub fn pop_ready(&mut self) -> Option<Batch> {
        self.ready.pop_front()
    }

    /// Marks `keys` acknowledged (applied or dead-lettered); their next waiting rows are released.
    pub fn acknowledge<'a>(&mut self, keys: impl IntoIterator<Item = &'a PrimaryKey>) {
        for key in keys {
            self.busy.remove(key);
            let Some(queue) = self.waiting.get_mut(key) else {
                continue;
            };
            // The first waiting row with this key is the next in its order.
            let next = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(key);
            }
            if let Some(rec) = next {
                self.waiting_rows -= 1;
                self.admit(rec);
            }
        }
    }

    /// Records held back behind an unacknowledged row with the same key.
    pub fn waiting_len(&self) -> usize {
        self.waiting_rows
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Nothing open, ready or waiting.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.ready.is_empty() && self.waiting_rows == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn rec(seq: u64, key: u8, op: Op, ttl: Option<u32>) -> Record {
        Record {
            key: PrimaryKey::Str(Arc::from(format!("k{key}"))),
            op,
            ttl,
            json: "{}".into(),
            origin: Origin {
                file: 0,
                row: seq + 1,
                seq,
            },
        }
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Update), Just(Op::Upsert), Just(Op::Delete)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Drives the batcher with random rows and random acknowledgement order and checks every
        /// invariant the sender relies on.
        #[test]
        fn batches_keep_every_invariant(
            rows in prop::collection::vec((0u8..12, op_strategy(), prop_oneof![Just(None), Just(Some(0u32)), Just(Some(60u32))]), 1..400),
            max_rows in 1usize..=100,
            vectorize in any::<bool>(),
            acks in prop::collection::vec(any::<prop::sample::Index>(), 0..2000),
            flush_every in 1usize..50,
        ) {
            let mut b = Batcher::new(max_rows, vectorize);
            let mut in_flight: Vec<Batch> = Vec::new();
            let mut sent_seqs: Vec<u64> = Vec::new();
            // For per-key order: the last seq of each key acknowledged, and keys in flight.
            let mut acked_upto: HashMap<PrimaryKey, u64> = HashMap::new();
            let mut acks = acks.into_iter();
            let mut check_and_send = |b: &mut Batcher, in_flight: &mut Vec<Batch>, acked_upto: &HashMap<PrimaryKey, u64>, all: &[Record]| {
                while let Some(batch) = b.pop_ready() {
                    let limit = if vectorize && batch.op != Op::Delete { 1 } else { max_rows };
                    prop_assert!(!batch.records.is_empty());
                    prop_assert!(batch.records.len() <= limit, "batch of {} over {}", batch.records.len(), limit);
                    let mut keys = HashSet::new();
                    for r in &batch.records {
                        prop_assert_eq!(r.op, batch.op);
                        prop_assert_eq!(r.ttl, batch.ttl);
                        prop_assert!(keys.insert(r.key.clone()), "duplicate key in one request");
                        // Every earlier row of this key is acknowledged.
                        for earlier in all.iter().filter(|e| e.key == r.key && e.origin.seq < r.origin.seq) {
                            prop_assert!(acked_upto.get(&r.key).is_some_and(|s| *s >= earlier.origin.seq),
                                "row {} sent before earlier row {} of its key was acknowledged", r.origin.seq, earlier.origin.seq);
                        }
                        // No other in-flight batch has this key.
                        prop_assert!(!in_flight.iter().any(|f| f.records.iter().any(|x| x.key == r.key)));
                        sent_seqs.push(r.origin.seq);
                    }
                    in_flight.push(batch);
                }
                Ok(())
            };
            let all: Vec<Record> = rows.iter().enumerate().map(|(i, (k, op, ttl))| rec(i as u64, *k, *op, *ttl)).collect();
            for (i, r) in all.iter().enumerate() {
                b.push(r.clone());
                if i % flush_every == 0 { b.flush(); }
                check_and_send(&mut b, &mut in_flight, &acked_upto, &all)?;
                // Acknowledge a random in-flight batch now and then.
                if let Some(idx) = acks.next() && !in_flight.is_empty() && idx.index(3) == 0 {
                    let done = in_flight.remove(idx.index(in_flight.len()));
                    for r in &done.records { acked_upto.insert(r.key.clone(), r.origin.seq); }
                    b.acknowledge(done.records.iter().map(|r| &r.key));
                    check_and_send(&mut b, &mut in_flight, &acked_upto, &all)?;
                }
            }
            // Drain: flush and acknowledge in random order until everything has gone out.
            let mut guard = 0;
            loop {
                b.flush();
                check_and_send(&mut b, &mut in_flight, &acked_upto, &all)?;
                if in_flight.is_empty() { break; }
                let pick = acks.next().map(|i| i.index(in_flight.len())).unwrap_or(0);
                let done = in_flight.remove(pick);
                for r in &done.records { acked_upto.insert(r.key.clone(), r.origin.seq); }
                b.acknowledge(done.records.iter().map(|r| &r.key));
                guard += 1;
                prop_assert!(guard < 100_000);
            }
            prop_assert!(b.is_empty());
            sent_seqs.sort_unstable();
            let expected: Vec<u64> = (0..all.len() as u64).collect();
            prop_assert_eq!(sent_seqs, expected, "every row sent exactly once");
        }
    }

    #[test]
    fn same_key_rows_wait_for_acknowledgement() {
        let mut b = Batcher::new(100, false);
        b.push(rec(0, 1, Op::Upsert, None));
        b.push(rec(1, 2, Op::Upsert, None));
        b.push(rec(2, 1, Op::Delete, None)); // same key: flushes the upsert batch and waits
        let first = b.pop_ready().expect("upsert batch flushed");
        assert_eq!(first.records.len(), 2);
        assert_eq!(b.waiting_len(), 1);
        b.flush();
        assert!(b.pop_ready().is_none(), "the delete must wait for the upsert");
        b.acknowledge(first.records.iter().map(|r| &r.key));
        b.flush();
        let second = b.pop_ready().expect("delete released");
        assert_eq!(second.op, Op::Delete);
        assert_eq!(second.records[0].origin.seq, 2);
    }

    #[test]
    fn vectorize_writes_go_one_per_request_deletes_do_not() {
        let mut b = Batcher::new(100, true);
        for i in 0..3 {
            b.push(rec(i, i as u8, Op::Upsert, None));
        }
        for i in 3..6 {
            b.push(rec(i, i as u8, Op::Delete, None));
        }
        b.flush();
        let sizes: Vec<usize> = std::iter::from_fn(|| b.pop_ready()).map(|x| x.records.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 3]);
    }
}
