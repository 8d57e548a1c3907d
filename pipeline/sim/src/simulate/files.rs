//! The simulated days' Parquet files, encoded on several threads without changing a byte.
//!
//! The engine simulates the days one after another on the calling thread (its random streams
//! are sequential) and turns each day's records into Arrow batches there, one [`DayFile`] per
//! file (kind × on time or late). [`FileWriters`] queue the files to worker threads, which
//! encode Parquet and write while the engine simulates the next day. When the workers fall
//! more than a day behind, the calling thread encodes the newest files itself, so both sides
//! stay busy whichever is slower, and the queue never holds much more than a day.
//!
//! Invariants: a file's bytes are a function of its batches alone (the same
//! `pharmwatch_core::lake::write_parquet` as `LakeWriter`, from the same batches:
//! [`super::columns`]), the batches a function of the seed and arguments, and every
//! [`DayFile`] has a path of its own — so the lake is the same bytes whatever the number of
//! threads and however they are scheduled. Memory is bounded: the day being simulated, about a
//! day of files in the queue, and one file in each thread's hands.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;

use pharmwatch_core::error::Result;
use pharmwatch_core::lake::{day_dir, write_parquet};
use pharmwatch_schemas::EventKind;

use super::columns::{self, LakeColumns};

/// One Parquet file of a day partition: its batches, still to encode and write.
#[derive(Debug)]
pub struct DayFile {
    /// The record kind.
    kind: EventKind,
    /// The partition (the day the file arrived).
    day: NaiveDate,
    /// The file's name in its partition.
    name: &'static str,
    /// The rows, in the batches `LakeWriter::write_day_file` cuts them into.
    batches: Vec<RecordBatch>,
    /// Rows in all.
    rows: usize,
}

impl DayFile {
    /// File `name` of the partition of `day` holding `records`; `None` when there are none
    /// (an empty kind has no file).
    pub fn new<T: LakeColumns>(
        day: NaiveDate,
        name: &'static str,
        records: &[T],
    ) -> Result<Option<Self>> {
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(DayFile {
            kind: T::KIND,
            day,
            name,
            batches: columns::lake_batches(records)?,
            rows: records.len(),
        }))
    }

    /// Encodes and writes the file into the lake at `root`.
    pub fn write(&self, root: &Path) -> Result<()> {
        let path = day_dir(root, self.kind, self.day).join(self.name);
        write_parquet(&path, self.kind.lake_schema(), &self.batches)
    }
}

/// The files waiting for a worker, shared by the threads.
#[derive(Default)]
pub struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when a file is queued or the queue closes.
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    files: VecDeque<DayFile>,
    /// Rows of the queued files.
    rows: usize,
    /// No more files will come.
    closed: bool,
    /// A worker failed: the caller stops and collects its error.
    failed: bool,
}

impl Queue {
    /// The pending files. A thread that panicked holding the lock left nothing half-changed
    /// (every change is one push or pop and a counter), so a poisoned lock is used as is; the
    /// panic itself reaches the caller when the thread is joined.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Encodes and writes [`DayFile`]s on worker threads of a [`std::thread::scope`] and, when
/// the workers are behind, on the caller's.
pub struct FileWriters<'scope> {
    /// The lake.
    root: &'scope Path,
    queue: &'scope Queue,
    /// The workers; each returns its first error.
    workers: Vec<ScopedJoinHandle<'scope, Result<()>>>,
}

impl<'scope> FileWriters<'scope> {
    /// Starts `workers` writer threads in `scope` (none: the caller writes every file).
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        root: &'env Path,
        queue: &'env Queue,
        workers: usize,
    ) -> Self {
        let workers = (0..workers)
            .map(|_| scope.spawn(move || work(root, queue)))
            .collect();
        FileWriters {
            root,
            queue,
            workers,
        }
    }

    /// Takes one day's `files`. With workers, they are queued; then, while the queue holds
    /// more rows than these files (the workers are more than a day behind), the caller
    /// writes the newest queued file itself. Returns a worker's error once one has failed.
    pub fn write_day(&mut self, files: Vec<DayFile>) -> Result<()> {
        if self.workers.is_empty() {
            return files.iter().try_for_each(|f| f.write(self.root));
        }
        let day_rows: usize = files.iter().map(|f| f.rows).sum();
        {
            let mut pending = self.queue.lock();
            if pending.failed {
                drop(pending);
                return self.finish();
            }
            pending.rows += day_rows;
            pending.files.extend(files);
        }
        self.queue.wake.notify_all();
        loop {
            let newest = {
                let mut pending = self.queue.lock();
                if pending.rows <= day_rows {
                    return Ok(());
                }
                let newest = pending.files.pop_back();
                pending.rows -= newest.as_ref().map_or(0, |f| f.rows);
                newest
            };
            let Some(file) = newest else { return Ok(()) };
            file.write(self.root)?;
        }
    }

    /// Closes the queue and waits for the workers to write what it holds; returns the first
    /// worker's error. Files given later are written on the caller's thread.
    pub fn finish(&mut self) -> Result<()> {
        self.queue.lock().closed = true;
        self.queue.wake.notify_all();
        let mut first = Ok(());
        for worker in self.workers.drain(..) {
            let result = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// A worker: writes the oldest queued file until the queue is closed and empty, or a file
/// fails.
fn work(root: &Path, queue: &Queue) -> Result<()> {
    loop {
        let file = {
            let mut pending = queue.lock();
            loop {
                if let Some(file) = pending.files.pop_front() {
                    pending.rows -= file.rows;
                    break file;
                }
                if pending.closed || pending.failed {
                    return Ok(());
                }
                pending = queue
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        if let Err(e) = file.write(root) {
            queue.lock().failed = true;
            queue.wake.notify_all();
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use pharmwatch_core::lake::LakeWriter;
    use pharmwatch_schemas::{SalesRecord, Validate};
    use serde::Serialize;

    use super::super::columns::tests::{
        inspections, inventory, product_tests, production, purchase, sales,
    };

    /// The file of `records` is the bytes `LakeWriter` writes for them.
    fn same_bytes_as_the_lake_writer<T: LakeColumns + Serialize + Validate>(records: &[T]) {
        let kind = T::KIND;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let day = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        let name = "part-00000.parquet";
        let file = DayFile::new(day, name, records).unwrap().unwrap();
        assert_eq!(file.rows, records.len());
        file.write(&a).unwrap();
        LakeWriter::new(&b)
            .unwrap()
            .write_day_file(kind, day, name, records)
            .unwrap();
        let bytes = |root: &Path| std::fs::read(day_dir(root, kind, day).join(name)).unwrap();
        assert!(bytes(&a) == bytes(&b), "{kind}: the files differ");
    }

    #[test]
    fn every_kind_is_written_as_the_lake_writer_writes_it() {
        same_bytes_as_the_lake_writer(&production(500));
        same_bytes_as_the_lake_writer(&purchase(500));
        same_bytes_as_the_lake_writer(&inventory(500));
        same_bytes_as_the_lake_writer(&product_tests(500));
        same_bytes_as_the_lake_writer(&inspections(500));
        same_bytes_as_the_lake_writer(&sales(1));
    }

    #[test]
    fn a_file_of_several_batches_is_the_same_bytes() {
        // More than two batches' worth of rows: the file's pages follow the batches.
        same_bytes_as_the_lake_writer(&sales(2 * columns::ROWS_PER_BATCH + 1_000));
    }

    #[test]
    fn no_records_no_file() {
        let day = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        let none = DayFile::new::<SalesRecord>(day, "part-00000.parquet", &[]).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn a_failed_file_stops_the_run_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the lake's first folder should be: no partition can be made.
        let root = dir.path().join("lake");
        std::fs::write(&root, b"not a folder").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        let queue = Queue::default();
        let outcome = std::thread::scope(|scope| {
            let mut writers = FileWriters::start(scope, &root, &queue, 2);
            let mut outcome = Ok(());
            for _ in 0..50 {
                let files = vec![
                    DayFile::new(day, "part-00000.parquet", &sales(10))
                        .unwrap()
                        .unwrap(),
                ];
                outcome = writers.write_day(files);
                if outcome.is_err() {
                    break;
                }
            }
            let finished = writers.finish();
            outcome.and(finished)
        });
        assert!(outcome.is_err());
    }
}
